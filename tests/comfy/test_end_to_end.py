"""ComfyUI files run by `easel run` on the tiny models, and re-run from the PNG they write."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from easel.cli.main import main
from easel.pngmeta import read_text_chunks
from tests.comfy.conftest import DATA, SHARED_COMFY


@pytest.fixture
def workdir(tmp_path: Path, tiny_env, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"))


def run(*args: str) -> int:
    return main(["run", *args, "-q", "--checkpoint", "tiny-shapes"])


def test_api_file_runs_and_its_png_runs_again(workdir, capsys) -> None:
    source = SHARED_COMFY / "comfyui_script_examples_basic_api_example.api.json"
    assert (
        run(str(source), "--set", "5.width=16", "--set", "5.height=16", "--set", "3.steps=2") == 0
    )
    first = workdir / "output" / "ComfyUI_00001.png"
    assert capsys.readouterr().out.split() == [str(Path("output") / "ComfyUI_00001.png")]
    assert pixels(first).shape == (16, 16, 3)
    chunks = read_text_chunks(first)
    assert "Steps: 2, Sampler: euler" in chunks["parameters"]
    assert '"3":{"type":"KSampler"' in chunks["easel.workflow"]
    # The PNG carries the workflow as it ran (overrides included): same seed, same image.
    assert main(["run", str(first), "-q"]) == 0
    assert np.array_equal(pixels(first), pixels(workdir / "output" / "ComfyUI_00002.png"))


def test_sdxl_graph_with_zeroed_negative_runs(workdir) -> None:
    source = SHARED_COMFY / "comfyui_tests_default_graph_sdxl1_0.api.json"
    assert (
        run(str(source), "--set", "5.width=16", "--set", "5.height=16", "--set", "10.steps=2") == 0
    )
    assert pixels(workdir / "output" / "test_inference_00001.png").shape == (16, 16, 3)


def test_img2img_file_loads_its_reference_image(workdir) -> None:
    Image.new("RGB", (16, 16), (200, 40, 40)).save(workdir / "reference.png")
    source = SHARED_COMFY / "ericHuang_img2img.api.json"
    assert run(str(source), "--set", "6.steps=2") == 0
    assert pixels(workdir / "output" / "Comic_00001.png").shape == (16, 16, 3)


def test_ui_file_runs_with_batch_and_subfolder(workdir) -> None:
    source = workdir / "graph.json"
    shutil.copy(DATA / "ui_default_plus.json", source)
    assert (
        run(str(source), "--set", "5.width=16", "--set", "5.height=16", "--set", "3.steps=2") == 0
    )
    folder = workdir / "output" / "lighthouse"
    assert sorted(p.name for p in folder.iterdir()) == ["shot_00001.png", "shot_00002.png"]


def test_esrgan_ui_file_runs_with_a_real_esrgan_file(workdir, tiny_models, monkeypatch) -> None:
    """The ESRGAN UI file as ComfyUI saves it: the sampled image goes through a Real-ESRGAN x4
    file (spandrel) and ImageScaleBy 0.5, so 16 px come out as 32."""
    from tests.models.test_upscale_models import realesrgan_layout, save

    models = workdir / "models"
    save(realesrgan_layout(), models / "upscale_models" / "RealESRGAN_x4plus.safetensors")
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join([str(models), str(tiny_models.root)]))
    assert (
        run(
            str(DATA / "esrgan_upscale.json"),
            "--set",
            "5.width=16",
            "--set",
            "5.height=16",
            "--set",
            "3.steps=2",
            "--set",
            "13.name=RealESRGAN_x4plus.safetensors",
        )
        == 0
    )
    assert pixels(workdir / "output" / "upscaled" / "lighthouse_00001.png").shape == (32, 32, 3)
