"""Done-when for real checkpoints: a ComfyUI install's models folder holding SD 1.5, SDXL base
and refiner and SD 1.5 inpainting single files (nothing beside them), a LoRA, VAEs,
embeddings, ControlNets (one a pickle .pth) and an ESRGAN model runs the ComfyUI files that use
them, unchanged but for smaller sizes and fewer steps, through `easel run --models-dir`.

The files are tests/comfy/data/*.api.json (written in ComfyUI's format, with the names
ComfyUI users have: `sd15/dreamshaper_8.safetensors`, `styles/ink_wash.safetensors`, ...)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from easel.cli.main import main
from tests.comfy.conftest import DATA
from tests.fixtures.sd_family import write_comfy_tokenizer

SIZE = 64


def _vae_file(single: Path, target: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(single))
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            k.removeprefix("first_stage_model."): v
            for k, v in state.items()
            if k.startswith("first_stage_model.")
        },
        str(target),
    )


@pytest.fixture(scope="module")
def install(sd_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`ComfyUI/` with `models/` laid out as ComfyUI users have it."""
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    from tests.models.test_controlnet_loading import ldm_controlnet_state, randomise
    from tests.models.test_lora import kohya_state_dict, lora_targets, random_lora

    root = tmp_path_factory.mktemp("install") / "ComfyUI"
    write_comfy_tokenizer(root)
    models = root / "models"
    sd1, inpaint = sd_models("sd1"), sd_models("sd1-inpaint")
    sdxl, refiner = sd_models("sdxl"), sd_models("sdxl-refiner")
    for built, names in (
        (
            sd1,
            (
                "v1-5-pruned-emaonly.safetensors",
                "sd15/v1-5-pruned-emaonly.safetensors",
                "sd15/dreamshaper_8.safetensors",
            ),
        ),
        (inpaint, ("sd15/512-inpainting-ema.safetensors",)),
        (sdxl, ("sdxl/sd_xl_base_1.0.safetensors",)),
        (refiner, ("sdxl/sd_xl_refiner_1.0.safetensors",)),
    ):
        for name in names:
            target = models / "checkpoints" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(built.single_file, target)
    _vae_file(sd1.single_file, models / "vae" / "vae-ft-mse-840000-ema-pruned.safetensors")
    _vae_file(sdxl.single_file, models / "vae" / "sdxl_vae.safetensors")
    unet_layers = random_lora(lora_targets(sd1.pipe.unet), seed=3, size=0.05)
    te_layers = random_lora(lora_targets(sd1.pipe.text_encoder), seed=4, size=0.05)
    lora = models / "loras" / "styles" / "ink_wash.safetensors"
    lora.parent.mkdir(parents=True)
    save_file(kohya_state_dict(unet_layers, te_layers), str(lora))
    generator = torch.Generator().manual_seed(5)
    (models / "embeddings").mkdir()
    for name in ("ink_style.safetensors", "easynegative.safetensors"):
        save_file(
            {"emb_params": torch.randn(2, 64, generator=generator)},
            str(models / "embeddings" / name),
        )
    torch.manual_seed(6)
    control = randomise(ControlNetModel.from_unet(sd1.pipe.unet), seed=6)
    state = ldm_controlnet_state(control)
    (models / "controlnet" / "sd15").mkdir(parents=True)
    save_file(state, str(models / "controlnet" / "sd15" / "control_v11p_sd15_openpose.safetensors"))
    torch.save(state, str(models / "controlnet" / "sd15" / "control_v11p_sd15_canny.pth"))
    try:
        from tests.models.test_upscale_models import realesrgan_layout

        (models / "upscale_models").mkdir()
        torch.save(realesrgan_layout(), str(models / "upscale_models" / "RealESRGAN_x4plus.pth"))
    except ImportError:
        pass
    return root


def small(api: dict[str, Any]) -> list[str]:
    """--set arguments: 64x64 latents, 2-4 steps (KSamplerAdvanced splits 3 + 1)."""
    sets = []
    for node_id, node in api.items():
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "EmptyLatentImage":
            sets += [f"{node_id}.width={SIZE}", f"{node_id}.height={SIZE}"]
        elif kind == "KSampler":
            sets.append(f"{node_id}.steps=2")
        elif kind == "KSamplerAdvanced":
            sets.append(f"{node_id}.steps=4")
            if inputs.get("start_at_step", 0) > 0:
                sets.append(f"{node_id}.start_at_step=3")
            else:
                sets.append(f"{node_id}.end_at_step=3")
    return [arg for pair in (("--set", s) for s in sets) for arg in pair]


def pictures(api: dict[str, Any], folder: Path) -> None:
    """The LoadImage inputs a user would have: 64x64 pictures, with a transparent hole."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    for node in api.values():
        name = node["inputs"].get("image") if node["class_type"] == "LoadImage" else None
        if isinstance(name, str):
            rgb = np.stack([x * 4, y * 4, (x + y) * 2], -1).clip(0, 255).astype(np.uint8)
            alpha = np.where((x > 16) & (x < 48) & (y > 16) & (y < 48), 0, 255)
            Image.fromarray(np.dstack([rgb, alpha]).astype(np.uint8), "RGBA").save(folder / name)


# The SDXL file's 4x upscale loader is muted: its API export keeps the consumer without its
# input (ComfyUI then skips that output), so the UI file, where the muted node is dropped with
# what needs it, is the one to run.
FILES = [
    "sd15_lora_embedding.api.json",
    "sd15_inpaint.api.json",
    "sd15_controlnet.api.json",
    "sdxl_base_refiner.json",
    "esrgan_upscale.api.json",
]


@pytest.mark.parametrize("name", FILES)
def test_comfyui_file_runs_on_the_install(
    name: str, install: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    if name.startswith("esrgan"):
        pytest.importorskip("spandrel", reason="the upscale extra (easel[upscale]) is needed")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("EASEL_MODELS_DIR", raising=False)
    source = DATA / name
    api = json.loads((DATA / (name.split(".")[0] + ".api.json")).read_text())
    pictures(api, tmp_path)
    code = main(
        ["run", str(source), "--models-dir", str(install), "--allow-unsafe-pickle", *small(api)]
    )
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    written = sorted((tmp_path / "output").rglob("*.png"))
    assert written, out.out
    for path in written:
        with Image.open(path) as picture:
            array = np.asarray(picture.convert("RGB"), dtype=np.float32)
        assert array.std() > 1.0  # an image, not a flat colour


def test_comfyui_file_runs_through_the_server(install: Path, tmp_path: Path) -> None:
    """The same install behind `easel serve --models-dir`: the SDXL base -> refiner UI file,
    converted by the server and queued, succeeds and writes its image."""
    from tests.server.serverproc import Server, free_port

    server = Server(
        tmp_path / "data",
        free_port(),
        ("--models-dir", str(install)),
        env={"HF_HUB_OFFLINE": "1", "EASEL_MODELS_DIR": ""},
    )
    try:
        status, body = server.call(
            "POST",
            "/api/workflows/convert",
            json.loads((DATA / "sdxl_base_refiner.json").read_text()),
        )
        assert status == 200, body
        workflow = body["workflow"]
        api = json.loads((DATA / "sdxl_base_refiner.api.json").read_text())
        for setting in small(api)[1::2]:
            target, value = setting.split("=")
            node, name = target.split(".")
            workflow["nodes"][node]["inputs"][name] = int(value)
        status, body = server.call("POST", "/api/runs", {"workflow": workflow})
        assert status == 201, body
        run = server.wait_run(str(body["id"]), timeout=300)
        assert run["status"] == "succeeded", (run, server.output()[-3000:])
        files = list((tmp_path / "data").rglob("*.png"))
        assert files, run
    finally:
        server.stop()
