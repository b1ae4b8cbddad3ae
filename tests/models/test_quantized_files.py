"""ComfyUI's quantised weights files (int8, int8 ConvRot, W4A8, NVFP4) load through
comfy-kitchen (the `quantized` extra, installed in CI): tiny Krea 2 files quantised by
comfy-kitchen's own quantisers in ComfyUI's layout load, through DiffusionModelLoader and
CLIPLoader, weights exactly equal to comfy-kitchen's dequantisation; ComfyUI's
`image_krea2_turbo_t2i_int8` template runs end to end with its own int8 ConvRot file name; a
user without the library, or with a format Easel does not know, gets an error naming the file
and the format."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.fixtures import krea2_family
from tests.fixtures import quantized_files as qf

pytest.importorskip("comfy_kitchen")

krea2_models = krea2_family.krea2_models
TRANSFORMER = "diffusion_models/krea2_turbo.safetensors"
TEXT_ENCODER = "text_encoders/qwen3vl_4b.safetensors"
# the int8 template's own file (ComfyUI ships the Krea 2 Turbo transformer as int8 ConvRot)
INT8_FILE = "diffusion_models/krea2_turbo_int8_convrot.safetensors"
# the float model's image against the int8 ConvRot one: quantisation error, not a bug's size
QUANTISED_TOLERANCE = 0.05
PROMPT = "a soccer player mid-air, low angle"


def manager_for(*roots: Path) -> Any:
    from easel.models.manager import ModelManager

    return ModelManager(list(roots), device="cpu", dtype=torch.float32)


def write(state: dict[str, Any], path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


@pytest.fixture(scope="module")
def quantised(krea2_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Krea 2 transformer and Qwen3-VL encoder in int8 ConvRot (`*_int8_convrot`), and the
    same weights as comfy-kitchen dequantises them in float files (`*_expected`)."""
    from safetensors.torch import load_file

    root = tmp_path_factory.mktemp("quantised")
    source = krea2_models.root / "models"
    for name in (TRANSFORMER, TEXT_ENCODER):
        state = load_file(str(source / name))
        packed, expected = qf.quantize(state, "int8_convrot")
        assert expected, name  # the tiny model has layers to quantise
        stem = name.removesuffix(".safetensors")
        write(packed, root / f"{stem}_int8_convrot.safetensors")
        write({**state, **expected}, root / f"{stem}_expected.safetensors")
    return root


def assert_same_weights(ours: Any, theirs: Any) -> None:
    mine, other = ours.state_dict(), theirs.state_dict()
    assert mine.keys() == other.keys()
    for key, value in mine.items():
        assert torch.equal(value, other[key]), key


def test_int8_convrot_files_load_comfy_kitchens_dequantisation_exactly(
    quantised: Path, krea2_models: Any
) -> None:
    """DiffusionModelLoader's and CLIPLoader's modules from the int8 ConvRot files hold exactly
    the weights of the float files holding comfy-kitchen's dequantisation."""
    from easel.models import family_files

    manager = manager_for(quantised, krea2_models.root / "ComfyUI")  # its tokenizer
    unet = family_files.diffusion_model(
        "q", quantised / "diffusion_models/krea2_turbo_int8_convrot.safetensors", manager
    ).unet
    reference = family_files.diffusion_model(
        "f", quantised / "diffusion_models/krea2_turbo_expected.safetensors", manager
    ).unet
    assert_same_weights(unet, reference)

    clip = family_files.load_clip(
        "krea2", "q", [quantised / "text_encoders/qwen3vl_4b_int8_convrot.safetensors"], manager
    )
    expected = family_files.load_clip(
        "krea2", "f", [quantised / "text_encoders/qwen3vl_4b_expected.safetensors"], manager
    )
    assert_same_weights(clip.parts[0].model, expected.parts[0].model)
    # and they are the float model's, up to int8's rounding
    original = krea2_models.pipe.transformer.state_dict()
    assert any(not torch.equal(v, original[k]) for k, v in unet.state_dict().items())


@pytest.fixture(scope="module")
def int8_template_root(quantised: Path, krea2_models: Any) -> Path:
    """The files `image_krea2_turbo_t2i_int8` loads, under its names: the transformer in int8
    ConvRot, the others the tiny float ones."""
    from tests.families.test_krea2_templates import TEMPLATE_FILES

    root = quantised / "template"
    source = krea2_models.root
    for name, tiny in TEMPLATE_FILES.items():
        if name.startswith("text_encoders/") or name.startswith("vae/"):
            (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / "models" / f"{tiny}.safetensors", root / "models" / name)
    (root / "models" / INT8_FILE).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(
        quantised / "diffusion_models/krea2_turbo_int8_convrot.safetensors",
        root / "models" / INT8_FILE,
    )
    shutil.copytree(source / "ComfyUI", root / "ComfyUI")
    # the style LoRA the template's switch leaves off: present so that it validates, never read
    write({"unused": torch.zeros(1)}, root / "models" / "loras" / "krea2_darkbrush.safetensors")
    return root


def saved_image(result: Any, folder: Path) -> torch.Tensor:
    import numpy as np
    from PIL import Image as PILImage

    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(folder / saved).convert("RGB"))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255


def test_krea2_int8_template_runs_with_its_int8_convrot_file(
    int8_template_root: Path,
    quantised: Path,
    krea2_models: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ComfyUI's template with its own file name runs end to end; its image is the one the
    dequantised weights give (a float file of them, same template) and close to the float
    model's (Krea2Pipeline's)."""
    from tests.families.test_krea2_templates import SIZE, STEPS, _only, prepared, run
    from tests.families.workflows import as_tensor

    root = int8_template_root
    roots = [root / "models", root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    from easel.workflow_edit import set_input

    workflow = prepared("image_krea2_turbo_t2i_int8")
    nodes = workflow["nodes"]
    # the prompt the template encodes: its user prompt String (the enhancer's instructions are
    # the other), made short (a long prompt only slows the tiny 36-layer encoder down)
    [user] = [
        i
        for i, n in nodes.items()
        if n["type"] == "String" and not n["inputs"]["value"].startswith("You are")
    ]
    set_input(workflow, f"{user}.value", PROMPT)
    unet = _only(nodes, "DiffusionModelLoader")
    assert nodes[unet]["inputs"]["name"] == Path(INT8_FILE).name
    (tmp_path / "q").mkdir()
    ours = saved_image(run(workflow, root, tmp_path / "q"), tmp_path / "q")

    # the same template on a float file holding comfy-kitchen's dequantisation
    expected = root / "models" / "diffusion_models" / "krea2_turbo_expected.safetensors"
    shutil.copyfile(quantised / "diffusion_models/krea2_turbo_expected.safetensors", expected)
    nodes[unet]["inputs"]["name"] = expected.name
    (tmp_path / "f").mkdir()
    dequantised = saved_image(run(workflow, root, tmp_path / "f"), tmp_path / "f")
    assert torch.equal(ours, dequantised)

    inputs = nodes[_only(nodes, "KSampler")]["inputs"]
    pipe = krea2_models.pipe
    pipe.set_progress_bar_config(disable=True)
    theirs = as_tensor(
        pipe(
            prompt=PROMPT,
            height=SIZE,
            width=SIZE,
            num_inference_steps=STEPS,
            guidance_scale=0.0,
            generator=torch.Generator("cpu").manual_seed(int(inputs["seed"])),
            output_type="np",
        ).images
    )
    assert float(ours.std()) > 0.01
    difference = (ours - theirs).abs().max().item()
    print(f"int8 ConvRot template vs the float model's image: max abs {difference:.4f}")
    assert difference <= QUANTISED_TOLERANCE


def test_without_comfy_kitchen_the_error_names_file_format_and_extra(
    krea2_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    from easel.models import family_files
    from easel.models.errors import ModelError

    state = load_file(str(krea2_models.root / "models" / TRANSFORMER))
    key = "model.diffusion_model.blocks.0.attn.wq.weight"
    path = write(qf.int8_by_hand(state, key), tmp_path / "krea2_turbo_int8.safetensors")
    qf.without_comfy_kitchen(monkeypatch)
    with pytest.raises(ModelError) as caught:
        family_files.diffusion_model(path.name, path, manager_for(tmp_path)).unet  # noqa: B018
    message = str(caught.value)
    assert path.name in message and "int8_tensorwise" in message
    assert "pip install 'easel[quantized]'" in message


def test_an_unknown_format_is_named(tmp_path: Path) -> None:
    from easel.models.errors import ModelError
    from easel.models.transformer_files import read_weights

    path = write(
        {
            "blocks.0.proj.weight": torch.zeros(16, 16, dtype=torch.int8),
            "blocks.0.proj.comfy_quant": qf.marker({"format": "svd_orbitquant_w4a4"}),
        },
        tmp_path / "model_svd.safetensors",
    )
    with pytest.raises(ModelError, match=r"model_svd\.safetensors .*'svd_orbitquant_w4a4'"):
        read_weights(path, manager_for(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["int8", "w4a8", "nvfp4"])
def test_other_formats_load_comfy_kitchens_dequantisation_exactly(
    kind: str, krea2_models: Any, tmp_path: Path
) -> None:
    """Plain int8, W4A8 (4-bit codes, ConvRot, codebook) and NVFP4 transformer files: the
    module holds exactly comfy-kitchen's dequantisation."""
    from safetensors.torch import load_file

    from easel.models import family_files

    state = load_file(str(krea2_models.root / "models" / TRANSFORMER))
    packed, expected = qf.quantize(state, kind)
    quantised = write(packed, tmp_path / f"krea2_turbo_{kind}.safetensors")
    reference = write({**state, **expected}, tmp_path / "krea2_turbo_expected.safetensors")
    manager = manager_for(tmp_path)
    assert_same_weights(
        family_files.diffusion_model("q", quantised, manager).unet,
        family_files.diffusion_model("f", reference, manager).unet,
    )


@pytest.mark.slow
def test_markers_in_the_files_metadata(krea2_models: Any, tmp_path: Path) -> None:
    """Files that list their quantised layers in the safetensors metadata
    (`_quantization_metadata`) instead of `.comfy_quant` tensors read the same."""
    import json

    from safetensors.torch import load_file, save_file

    from easel.models.transformer_files import read_weights

    state = load_file(str(krea2_models.root / "models" / TRANSFORMER))
    packed, expected = qf.quantize(state, "int8_convrot")
    layers = {
        k[: -len(".comfy_quant")]: json.loads(bytes(v.tolist()).decode())
        for k, v in packed.items()
        if k.endswith(".comfy_quant")
    }
    plain = {k: v for k, v in packed.items() if not k.endswith(".comfy_quant")}
    path = tmp_path / "krea2_turbo_int8_convrot.safetensors"
    save_file(plain, str(path), metadata={"_quantization_metadata": json.dumps({"layers": layers})})
    read = read_weights(path, manager_for(tmp_path))
    assert read.keys() == state.keys()
    for key, value in expected.items():
        assert torch.equal(read[key], value), key


@pytest.mark.slow
def test_a_flux3_int8_convrot_transformer_loads_comfy_kitchens_dequantisation(
    tmp_path: Path,
) -> None:
    """Another family through the same reader: Flux 3's transformer (the Klein templates'
    `*_int8_convrot` file) in int8 ConvRot."""
    from easel.models import family_files
    from tests.fixtures.flux3_family import _transformer, transformer_file

    torch.manual_seed(0)
    state = transformer_file(_transformer(True))
    packed, expected = qf.quantize(state, "int8_convrot")
    assert expected
    quantised = write(packed, tmp_path / "flux3-image-klein-int8_convrot.safetensors")
    reference = write({**state, **expected}, tmp_path / "flux3-image-klein.safetensors")
    manager = manager_for(tmp_path)
    assert_same_weights(
        family_files.diffusion_model("q", quantised, manager).unet,
        family_files.diffusion_model("f", reference, manager).unet,
    )
