"""GGUF files (ComfyUI-GGUF's UnetLoaderGGUF / CLIPLoaderGGUF files) load through the gguf package
and diffusers' GGUF support (the `quantized` extra, installed in CI): a tiny Flux.1 transformer and
T5 encoder written by the gguf package's own GGUFWriter, 2-D weights quantised by its own
quantisers (Q8_0, Q4_0, F16, BF16), load through DiffusionModelLoader and DualTextEncoderLoader
with weights exactly equal to the gguf package's dequantisation; a ComfyUI API prompt with
UnetLoaderGGUF and DualCLIPLoaderGGUF converts and runs, giving the image of the dequantised
weights exactly and FluxPipeline's float image closely; refusals name the file and the reason."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_flux_parity import PROMPT, TOLERANCE, reference
from tests.families.workflows import image_of
from tests.fixtures import flux_family
from tests.fixtures import gguf_files as gf
from tests.fixtures.sd_family import write_comfy_tokenizer

pytest.importorskip("gguf")

TRANSFORMER = "flux-dev-Q8_0.gguf"
T5 = "t5xxl-Q8_0.gguf"
# the float model's image against the quantised one (Q4_0 among the types): quantisation error
QUANTISED_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def gguf_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Flux.1 dev (diffusers pipeline and ComfyUI's split files), its transformer and
    T5 encoder also as GGUF files, and float files of the gguf package's dequantisation of
    them (`*-expected.safetensors`)."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("gguf")
    write_comfy_tokenizer(root / "ComfyUI")
    flux_family.write_comfy_t5_tokenizer(root / "ComfyUI")
    built = flux_family.build("dev", root)
    models = root / "models"
    for folder, source, target in (
        ("diffusion_models", "flux-dev.safetensors", TRANSFORMER),
        ("text_encoders", "t5xxl.safetensors", T5),
    ):
        state = load_file(str(models / folder / source))
        expected = gf.write_gguf(
            state, models / folder / target, "flux" if "flux" in target else "t5"
        )
        save_file(
            {k: v.contiguous() for k, v in expected.items()},
            str(models / folder / expected_name(target)),
        )
    _PIPES[root] = built.pipe
    return root


# The FluxPipeline of each gguf_root (the float model the files were written from).
_PIPES: dict[Path, Any] = {}


def manager_for(root: Path) -> Any:
    from easel.models.manager import ModelManager

    return ModelManager([root / "models", root / "ComfyUI"], device="cpu", dtype=torch.float32)


def assert_same_weights(ours: Any, theirs: Any) -> None:
    mine, other = ours.state_dict(), theirs.state_dict()
    assert mine.keys() == other.keys()
    for key, value in mine.items():
        assert torch.equal(value, other[key]), key


def assert_every_type_written(root: Path) -> None:
    models = root / "models"
    for folder, name in (("diffusion_models", TRANSFORMER), ("text_encoders", T5)):
        types = set(gf.types_of(models / folder / name).values())
        assert {"Q8_0", "Q4_0", "F16", "BF16", "F32"} <= types, (name, types)


# (the default run's parity test below checks the same weights through the images)
@pytest.mark.slow
def test_gguf_files_load_the_gguf_packages_dequantisation_exactly(gguf_root: Path) -> None:
    """The transformer and T5 encoder from the GGUF files hold exactly the weights of the float
    files of the gguf package's dequantisation; the files hold each type written."""
    from easel.models import family_files

    models = gguf_root / "models"
    assert_every_type_written(gguf_root)
    manager = manager_for(gguf_root)
    unet = family_files.diffusion_model("q", models / "diffusion_models" / TRANSFORMER, manager)
    reference_unet = family_files.diffusion_model(
        "f",
        models / "diffusion_models" / expected_name(TRANSFORMER),
        manager,
    )
    assert_same_weights(unet.unet, reference_unet.unet)
    # and they are the float model's, up to the quantisation's rounding
    original = _PIPES[gguf_root].transformer.state_dict()
    assert any(not torch.equal(v, original[k]) for k, v in unet.unet.state_dict().items())

    text = models / "text_encoders"
    clip = family_files.load_clip("flux", "q", [text / "clip_l.safetensors", text / T5], manager)
    expected = family_files.load_clip(
        "flux",
        "f",
        [text / "clip_l.safetensors", text / expected_name(T5)],
        manager,
    )
    for part, other in zip(clip.parts, expected.parts, strict=True):
        assert_same_weights(part.model, other.model)


def test_a_llama_cpp_named_t5_loads_with_transformers_names(gguf_root: Path) -> None:
    """city96's T5 GGUF layout (llama.cpp's names, `enc.blk.0.attn_q.weight`, architecture
    t5encoder) loads through DualTextEncoderLoader's files exactly as the same quantised tensors
    in ComfyUI's t5xxl names."""
    from safetensors.torch import load_file

    from easel.models import family_files

    text = gguf_root / "models" / "text_encoders"
    state = load_file(str(text / "t5xxl.safetensors"))
    llama_cpp = text / "t5-v1_1-xxl-encoder-Q8_0.gguf"
    gf.write_gguf(gf.llama_cpp_t5(state), llama_cpp, "t5encoder")
    assert "enc.blk.0.attn_q.weight" in gf.types_of(llama_cpp)
    manager = manager_for(gguf_root)
    clip = family_files.load_clip("flux", "l", [text / "clip_l.safetensors", llama_cpp], manager)
    same = family_files.load_clip("flux", "t", [text / "clip_l.safetensors", text / T5], manager)
    for part, other in zip(clip.parts, same.parts, strict=True):
        assert_same_weights(part.model, other.model)


def gguf_prompt(unet: str, t5: str) -> dict[str, Any]:
    """A ComfyUI API prompt of the Flux templates' shape with ComfyUI-GGUF's loaders."""
    return {
        "1": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": unet}},
        "2": {
            "class_type": "DualCLIPLoaderGGUF",
            "inputs": {"clip_name1": "clip_l.safetensors", "clip_name2": t5, "type": "flux"},
        },
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "4": {
            "class_type": "CLIPTextEncodeFlux",
            "inputs": {"clip": ["2", 0], "clip_l": PROMPT, "t5xxl": PROMPT, "guidance": 3.5},
        },
        "5": {
            "class_type": "EmptySD3LatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "6": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["4", 0],
                "negative": ["4", 0],
                "latent_image": ["5", 0],
                "seed": 42,
                "steps": 3,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
            },
        },
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["3", 0]}},
    }


def dequantised_pipe(root: Path) -> Any:
    """The FluxPipeline of `root` with the transformer and T5 encoder holding the gguf package's
    dequantisation of the GGUF files (the expected files; the transformer's keys converted by
    diffusers' converter through Easel's wrapper, which splits the tiny model's fused single
    blocks at its width: that conversion is test_flux_parity's, on float files)."""
    import copy

    from diffusers import FluxPipeline
    from safetensors.torch import load_file

    from easel.models.flux_loading import convert_transformer

    pipe = _PIPES[root]
    models = root / "models"
    transformer = copy.deepcopy(pipe.transformer)
    state = load_file(str(models / "diffusion_models" / expected_name(TRANSFORMER)))
    transformer.load_state_dict(convert_transformer(state))
    t5 = copy.deepcopy(pipe.text_encoder_2)
    state = load_file(str(models / "text_encoders" / expected_name(T5)))
    missing = t5.load_state_dict(state, strict=False).missing_keys
    assert missing == ["encoder.embed_tokens.weight"]  # tied to shared.weight
    return FluxPipeline(**{**pipe.components, "transformer": transformer, "text_encoder_2": t5})


def expected_name(name: str) -> str:
    return name.replace(".gguf", "-expected.safetensors")


def run_prompt(root: Path, prompt: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    from easel.comfy.api_format import convert_prompt
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins

    roots = (root / "models", root / "ComfyUI")
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(p) for p in roots))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    executor = Executor(load_plugins(entry_points=False), services={"models": manager_for(root)})
    workflow = convert_prompt(prompt)
    return image_of(executor.run(workflow, targets=["7"], keep_values=True), "7")


def test_comfy_api_prompt_with_gguf_loaders_equals_flux_pipeline(
    gguf_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UnetLoaderGGUF and DualCLIPLoaderGGUF convert to Easel's loaders; the prompt runs on the
    GGUF files (each of Q8_0, Q4_0, F16, BF16 and F32 in both) and gives FluxPipeline's image
    with the gguf package's dequantisation of those files (parity, 1e-3)."""
    from easel.comfy.api_format import convert_prompt

    assert_every_type_written(gguf_root)
    workflow = convert_prompt(gguf_prompt(TRANSFORMER, T5))
    assert workflow["nodes"]["1"] == {
        "type": "DiffusionModelLoader",
        "inputs": {"name": TRANSFORMER},
    }
    assert workflow["nodes"]["2"] == {
        "type": "DualTextEncoderLoader",
        "inputs": {"name1": "clip_l.safetensors", "name2": T5, "type": "flux"},
    }
    ours = run_prompt(gguf_root, gguf_prompt(TRANSFORMER, T5), monkeypatch)
    theirs = reference(
        dequantised_pipe(gguf_root), prompt=PROMPT, num_inference_steps=3, guidance_scale=3.5
    )
    assert float(ours.std()) > 0.01
    difference = (ours - theirs).abs().max().item()
    print(f"GGUF prompt vs FluxPipeline with the dequantised weights: max abs {difference:.2e}")
    assert difference <= TOLERANCE


@pytest.mark.slow
def test_gguf_image_is_the_dequantised_files_and_near_the_float_models(
    gguf_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same prompt on float files of the dequantisation gives the GGUF files' image exactly,
    and the float model's (FluxPipeline's) within the quantisation's error."""
    ours = run_prompt(gguf_root, gguf_prompt(TRANSFORMER, T5), monkeypatch)
    expected = run_prompt(
        gguf_root, gguf_prompt(expected_name(TRANSFORMER), expected_name(T5)), monkeypatch
    )
    assert torch.equal(ours, expected)
    theirs = reference(_PIPES[gguf_root], prompt=PROMPT, num_inference_steps=3, guidance_scale=3.5)
    difference = (ours - theirs).abs().max().item()
    print(f"GGUF (Q8_0/Q4_0/F16/BF16) vs FluxPipeline's float image: max abs {difference:.4f}")
    assert difference <= QUANTISED_TOLERANCE


def test_without_the_gguf_package_the_error_names_file_and_extra(
    gguf_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from easel.models import family_files
    from easel.models.errors import ModelError

    path = gguf_root / "models" / "diffusion_models" / TRANSFORMER
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(ModelError) as caught:
        family_files.diffusion_model(path.name, path, manager_for(gguf_root))
    message = str(caught.value)
    assert path.name in message and "pip install 'easel[quantized]'" in message


def test_llama_cpp_names_and_unknown_types_are_refused(tmp_path: Path) -> None:
    """A text encoder in llama.cpp's tensor names (other than T5) is refused naming the
    architecture and a tensor; a GGML type diffusers does not dequantise is refused naming the
    file."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter

    from easel.models.errors import ModelError
    from easel.models.gguf_files import read_gguf, shapes

    llama = tmp_path / "llama-3.1-8b-Q8_0.gguf"
    gf.write_gguf({"blk.0.attn_q.weight": torch.randn(32, 32)}, llama, "llama")
    for read in (shapes, lambda p: read_gguf(p, torch.float32)):
        with pytest.raises(ModelError) as caught:
            read(llama)
        message = str(caught.value)
        assert llama.name in message and "'llama'" in message
        assert "blk.0.attn_q.weight" in message

    odd = tmp_path / "odd.gguf"
    writer = GGUFWriter(str(odd), "flux")
    writer.add_tensor("img_in.weight", np.zeros((4, 4), dtype=np.float64))
    writer.add_tensor(
        "img_in.bias", np.zeros(4, dtype=np.float32), raw_dtype=GGMLQuantizationType.F32
    )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelError) as caught:
        read_gguf(odd, torch.float32)
    assert odd.name in str(caught.value) and "img_in.weight" in str(caught.value)


def test_gguf_files_are_listed_for_both_loaders(gguf_root: Path) -> None:
    from easel.models import discovery

    roots = [gguf_root / "models"]
    assert TRANSFORMER in discovery.kind_names("diffusion_models", roots)
    assert T5 in discovery.kind_names("text_encoders", roots)
    assert T5 in discovery.kind_names("clip", roots)


def test_flattened_tensors_get_their_shape_back(tmp_path: Path) -> None:
    """ComfyUI-GGUF's converter stores a tensor of more than four dimensions flattened, its
    shape in `comfy.gguf.orig_shape.<name>`: the reader and the header give that shape."""
    import numpy as np
    from gguf import GGUFWriter

    from easel.models.gguf_files import ORIG_SHAPE, read_gguf, shapes

    value = torch.randn(2, 3, 4, 5, 6)
    path = tmp_path / "five-d.gguf"
    writer = GGUFWriter(str(path), "flux")
    writer.add_array(ORIG_SHAPE + "patch.weight", list(value.shape))
    writer.add_tensor("patch.weight", value.reshape(6, -1).numpy().astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert shapes(path)["patch.weight"].shape == (2, 3, 4, 5, 6)
    assert torch.equal(read_gguf(path, torch.float32)["patch.weight"], value)


def test_ui_format_gguf_loaders_convert() -> None:
    """ComfyUI-GGUF's nodes in a saved (UI-format) workflow: their widgets become the Easel
    loaders' inputs; UnetLoaderGGUFAdvanced's dequantisation widgets are dropped."""
    from easel.comfy.convert import to_easel

    def node(number: int, kind: str, output: str, widgets: list[Any]) -> dict[str, Any]:
        outputs = [{"name": output, "type": output, "links": []}]
        return {
            "id": number,
            "type": kind,
            "inputs": [],
            "outputs": outputs,
            "widgets_values": widgets,
        }

    workflow = {
        "last_node_id": 3,
        "last_link_id": 0,
        "links": [],
        "version": 0.4,
        "nodes": [
            node(1, "UnetLoaderGGUFAdvanced", "MODEL", [TRANSFORMER, "default", "target", True]),
            node(2, "CLIPLoaderGGUF", "CLIP", [T5, "sd3"]),
            node(3, "DualCLIPLoaderGGUF", "CLIP", ["clip_l.safetensors", T5, "flux"]),
        ],
    }
    assert to_easel(workflow)["nodes"] == {
        "1": {"type": "DiffusionModelLoader", "inputs": {"name": TRANSFORMER}},
        "2": {"type": "TextEncoderLoader", "inputs": {"name": T5, "type": "sd3"}},
        "3": {
            "type": "DualTextEncoderLoader",
            "inputs": {"name1": "clip_l.safetensors", "name2": T5, "type": "flux"},
        },
    }
