"""LoRAs on the transformer (flow) families: files in the formats users have (ComfyUI / BFL
`diffusion_model.` keys, kohya `lora_unet_...`, diffusers/PEFT `transformer.` keys), written
here with tiny random weights, applied by LoraLoaderModelOnly / LoraLoader give the image of the
family's diffusers pipeline after `pipe.load_lora_weights(state_dict)` (CPU fp32, max abs pixel
diff 1e-3), and never change the shared transformer.

diffusers' kohya/BFL Flux.1 converter splits `single_blocks.N.linear1` with Flux.1's own sizes
(3072, 3072, 3072, 12288) hard-coded, so the tiny Flux LoRAs here leave that one layer out
(diffusers' own `load_lora_weights` cannot read it either at this size).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.families.workflows import SIZE, as_tensor, image_of
from tests.fixtures import flux_family, qwen_image_family

flux_root = flux_family.flux_root
flux_models = flux_family.flux_models
flux_manager = flux_family.flux_manager
run_flux = flux_family.run_flux
qwen_models = qwen_image_family.qwen_models
qwen_manager = qwen_image_family.qwen_manager
run_qwen = qwen_image_family.run_qwen

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"
RANK = 2


# -- LoRA files ---------------------------------------------------------------------------
def _pair(weight: torch.Tensor, gen: torch.Generator, size: float) -> tuple[Any, Any]:
    down = torch.randn(RANK, weight.shape[1], generator=gen) * size
    return down, torch.randn(weight.shape[0], RANK, generator=gen) * size


def flux_bfl_lora(
    transformer: Any,
    *,
    prefix: str,
    down: str,
    up: str,
    alpha: float | None,
    seed: int = 1,
    blocks: bool = True,
) -> dict[str, torch.Tensor]:
    """A LoRA on the Linears of a Flux.1 transformer in BFL's names (`double_blocks.0.img_attn.
    qkv`, ...), `prefix` "diffusion_model." (ComfyUI) or kohya's "lora_unet_" (dots as _):
    those of the blocks, or (`blocks` False) the others (img_in, txt_in, time_in, final_layer)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, weight in sorted(flux_family.transformer_bfl(transformer).items()):
        if not key.endswith(".weight") or weight.dim() != 2 or "linear1" in key:
            continue
        if key.startswith(("double_blocks.", "single_blocks.")) != blocks:
            continue
        stem = key.removesuffix(".weight")
        stem = stem.replace(".", "_") if prefix == "lora_unet_" else stem
        d, u = _pair(weight, gen, 0.3)
        out[f"{prefix}{stem}.{down}.weight"] = d
        out[f"{prefix}{stem}.{up}.weight"] = u
        if alpha is not None:
            out[f"{prefix}{stem}.alpha"] = torch.tensor(alpha)
    return out


def peft_lora(
    module: nn.Module, prefix: str, *, seed: int = 2, size: float = 0.3, only: str = ""
) -> dict[str, torch.Tensor]:
    """diffusers' PEFT layout on every Linear of `module` (names containing `only`):
    `<prefix><module>.lora_A.weight` / `lora_B`."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, sub in sorted(module.named_modules()):
        if isinstance(sub, nn.Linear) and only in name:
            d, u = _pair(sub.weight, gen, size)
            out[f"{prefix}{name}.lora_A.weight"] = d
            out[f"{prefix}{name}.lora_B.weight"] = u
    return out


def kohya_lora(
    module: nn.Module, prefix: str, *, alpha: float, seed: int = 3, only: str = ""
) -> dict[str, torch.Tensor]:
    """kohya's layout on every Linear of `module`: `<prefix><module with _>.lora_down.weight`,
    `.lora_up.weight`, `.alpha`."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, sub in sorted(module.named_modules()):
        if isinstance(sub, nn.Linear) and only in name:
            d, u = _pair(sub.weight, gen, 0.3)
            stem = prefix + name.replace(".", "_")
            out[f"{stem}.lora_down.weight"] = d
            out[f"{stem}.lora_up.weight"] = u
            out[f"{stem}.alpha"] = torch.tensor(alpha)
    return out


def write_lora(models: Path, name: str, state_dict: dict[str, torch.Tensor]) -> str:
    from safetensors.torch import save_file

    folder = models / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(folder / name))
    return name


@contextmanager
def pipe_with_lora(pipe: Any, state_dict: dict[str, torch.Tensor], scale: float = 1.0) -> Iterator:
    """The (session-shared) pipeline with diffusers' own loading of the LoRA, removed after."""
    pipe.load_lora_weights({k: v.clone() for k, v in state_dict.items()}, adapter_name="t")
    if scale != 1.0:
        pipe.set_adapters(["t"], [scale])
    try:
        yield pipe
    finally:
        pipe.unload_lora_weights()


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_weights(module: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = module.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())


# -- Flux.1 -------------------------------------------------------------------------------
def flux_workflow(lora: str | None, strength: float = 1.0, *, clip: bool = False) -> Any:
    nodes: dict[str, Any] = {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "flux-dev.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "DualTextEncoderLoader",
            "inputs": {"name1": "t5xxl.safetensors", "name2": "clip_l.safetensors", "type": "flux"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "ae.safetensors"}},
        "pos": {
            "type": "TextEncodeFlux",
            "inputs": {
                "clip": ["clip", "clip"],
                "clip_l": PROMPT,
                "t5xxl": PROMPT,
                "guidance": 3.5,
            },
        },
        "lat": {"type": "EmptyLatent", "inputs": {"width": SIZE, "height": SIZE}},
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["unet", "model"],
                "positive": ["pos", "conditioning"],
                "latent": ["lat", "latent"],
                "seed": 42,
                "steps": 3,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["vae", "vae"], "latent": ["k", "latent"]}},
    }
    if lora is not None and clip:
        nodes["lora"] = {
            "type": "LoraLoader",
            "inputs": {
                "model": ["unet", "model"],
                "clip": ["clip", "clip"],
                "name": lora,
                "strength_model": strength,
                "strength_clip": strength,
            },
        }
        nodes["pos"]["inputs"]["clip"] = ["lora", "clip"]
        nodes["k"]["inputs"]["model"] = ["lora", "model"]
    elif lora is not None:
        nodes["lora"] = {
            "type": "LoraLoaderModelOnly",
            "inputs": {"model": ["unet", "model"], "name": lora, "strength_model": strength},
        }
        nodes["k"]["inputs"]["model"] = ["lora", "model"]
    return nodes


def flux_reference(pipe: Any) -> Any:
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        out = pipe(
            prompt=PROMPT,
            height=SIZE,
            width=SIZE,
            num_inference_steps=3,
            guidance_scale=3.5,
            generator=torch.Generator("cpu").manual_seed(42),
            output_type="np",
            max_sequence_length=256,
        ).images
    return as_tensor(out)


@pytest.fixture(scope="module")
def flux_plain(flux_models: Any) -> Any:
    return flux_reference(flux_models["dev"].pipe)


def _flux_parity(
    flux_models: Any,
    run_flux: Any,
    flux_root: Path,
    flux_plain: Any,
    name: str,
    state_dict: dict[str, torch.Tensor],
    strength: float = 1.0,
) -> Any:
    write_lora(flux_root / "models", name, state_dict)
    result = run_flux(flux_workflow(name, strength), ["dec", "lora"])
    ours = image_of(result)
    with pipe_with_lora(flux_models["dev"].pipe, state_dict, strength) as pipe:
        theirs = flux_reference(pipe)
    assert (theirs - flux_plain).abs().max().item() > 10 * TOLERANCE  # the LoRA does something
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    return result


def test_flux_comfyui_lora_equals_flux_pipeline(
    flux_models: Any, run_flux: Any, flux_root: Path, flux_plain: Any
) -> None:
    """ComfyUI's / BFL's `diffusion_model.double_blocks...lora_down` keys with alphas; the shared
    transformer's weights are bit-identical after the run."""
    sd = flux_bfl_lora(
        flux_models["dev"].pipe.transformer,
        prefix="diffusion_model.",
        down="lora_down",
        up="lora_up",
        alpha=1.0,
    )
    result = _flux_parity(
        flux_models, run_flux, flux_root, flux_plain, "flux_comfy.safetensors", sd
    )
    handle = result.values["lora"]["model"]
    before = snapshot(handle.unet)
    plain = image_of(run_flux(flux_workflow(None), ["dec"]))
    assert (plain - flux_plain).abs().max().item() <= TOLERANCE
    assert_same_weights(handle.unet, before)
    assert_same_weights(handle.unet, snapshot(flux_models["dev"].pipe.transformer))


def test_flux_layers_outside_the_blocks_are_applied(
    flux_models: Any, run_flux: Any, flux_root: Path, flux_plain: Any
) -> None:
    """img_in, txt_in, time_in, vector_in, guidance_in and final_layer of a kohya/ComfyUI file
    are applied, as ComfyUI applies them. diffusers 0.42's Flux kohya converter returns those
    layers without the `transformer.` prefix, so its load_lora_weights drops them: the
    reference here is diffusers' loading of the converted layers with the prefix."""
    from diffusers import FluxPipeline

    pipe = flux_models["dev"].pipe
    sd = flux_bfl_lora(
        pipe.transformer,
        prefix="diffusion_model.",
        down="lora_down",
        up="lora_up",
        alpha=1.0,
        seed=4,
        blocks=False,
    )
    converted = FluxPipeline.lora_state_dict({k: v.clone() for k, v in sd.items()})
    top_level = [k for k in converted if not k.startswith("transformer.")]
    assert any(k.startswith("x_embedder.") for k in top_level)
    assert any(k.startswith("norm_out.linear.") for k in top_level)
    prefixed = {
        k if k.startswith("transformer.") else "transformer." + k: v for k, v in converted.items()
    }
    write_lora(flux_root / "models", "flux_top.safetensors", sd)
    ours = image_of(run_flux(flux_workflow("flux_top.safetensors"), ["dec"]))
    with pipe_with_lora(pipe, prefixed) as with_lora:
        theirs = flux_reference(with_lora)
    assert (theirs - flux_plain).abs().max().item() > 10 * TOLERANCE
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_flux_kohya_lora_at_a_strength_equals_flux_pipeline(
    flux_models: Any, run_flux: Any, flux_root: Path, flux_plain: Any
) -> None:
    """kohya's `lora_unet_double_blocks_0_img_attn_qkv` names (alpha 4 of rank 2) at 0.6 is
    diffusers' adapter at weight 0.6."""
    sd = flux_bfl_lora(
        flux_models["dev"].pipe.transformer,
        prefix="lora_unet_",
        down="lora_down",
        up="lora_up",
        alpha=4.0,
        seed=5,
    )
    _flux_parity(flux_models, run_flux, flux_root, flux_plain, "flux_kohya.safetensors", sd, 0.6)


def test_flux_diffusers_peft_lora_equals_flux_pipeline(
    flux_models: Any, run_flux: Any, flux_root: Path, flux_plain: Any
) -> None:
    """diffusers' own `transformer.<module>.lora_A.weight` keys, on every Linear."""
    sd = peft_lora(flux_models["dev"].pipe.transformer, "transformer.", size=0.2)
    _flux_parity(flux_models, run_flux, flux_root, flux_plain, "flux_peft.safetensors", sd)


def test_flux_bfl_lora_with_peft_suffixes_is_the_kohya_suffixed_one(
    flux_models: Any, run_flux: Any, flux_root: Path
) -> None:
    """`diffusion_model.<BFL name>.lora_A / lora_B` (no alphas) is the same LoRA as
    `lora_down / lora_up`."""
    transformer = flux_models["dev"].pipe.transformer
    kwargs: dict[str, Any] = {"prefix": "diffusion_model.", "alpha": None, "seed": 7}
    write_lora(
        flux_root / "models",
        "flux_ab.safetensors",
        flux_bfl_lora(transformer, down="lora_A", up="lora_B", **kwargs),
    )
    write_lora(
        flux_root / "models",
        "flux_du.safetensors",
        flux_bfl_lora(transformer, down="lora_down", up="lora_up", **kwargs),
    )
    a = image_of(run_flux(flux_workflow("flux_ab.safetensors"), ["dec"]))
    b = image_of(run_flux(flux_workflow("flux_du.safetensors"), ["dec"]))
    plain = image_of(run_flux(flux_workflow(None), ["dec"]))
    assert (a - plain).abs().max().item() > 10 * TOLERANCE
    assert (a - b).abs().max().item() <= 1e-6


def test_flux_lora_at_strength_zero_is_the_plain_image(
    flux_models: Any, run_flux: Any, flux_root: Path, flux_plain: Any
) -> None:
    sd = peft_lora(flux_models["dev"].pipe.transformer, "transformer.", size=0.2)
    write_lora(flux_root / "models", "flux_zero.safetensors", sd)
    ours = image_of(run_flux(flux_workflow("flux_zero.safetensors", 0.0), ["dec"]))
    assert (ours - flux_plain).abs().max().item() <= TOLERANCE


def test_flux_lora_with_clip_l_layers_through_lora_loader(
    flux_models: Any, run_flux: Any, flux_root: Path, flux_plain: Any
) -> None:
    """LoraLoader applies a kohya file's `lora_te1_` layers to Flux's CLIP-L (diffusers'
    text_encoder) and its transformer layers to the transformer, as FluxPipeline does."""
    pipe = flux_models["dev"].pipe
    sd = {
        **flux_bfl_lora(
            pipe.transformer,
            prefix="lora_unet_",
            down="lora_down",
            up="lora_up",
            alpha=2.0,
            seed=9,
        ),
        # kohya names CLIP-L's layers `text_model.encoder...` (transformers 5 drops text_model.)
        **kohya_lora(pipe.text_encoder, "lora_te1_text_model_", alpha=2.0, only="encoder.layers"),
    }
    write_lora(flux_root / "models", "flux_te.safetensors", sd)
    ours = image_of(run_flux(flux_workflow("flux_te.safetensors", clip=True), ["dec"]))
    model_only = image_of(run_flux(flux_workflow("flux_te.safetensors"), ["dec"]))
    with pipe_with_lora(pipe, sd) as with_lora:
        assert any("lora" in n for n, _ in with_lora.text_encoder.named_modules())
        theirs = flux_reference(with_lora)
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    # the CLIP-L layers change the pooled embedding, hence the image
    assert (ours - model_only).abs().max().item() > 10 * TOLERANCE


def test_an_sdxl_lora_on_flux_names_the_file_the_family_and_what_it_is(
    flux_models: Any, run_flux: Any, flux_root: Path
) -> None:
    sd = {}
    for block in ("input_blocks_4_1_transformer_blocks_0_attn1_to_q", "middle_block_1_proj_in"):
        sd[f"lora_unet_{block}.lora_down.weight"] = torch.zeros(2, 640)
        sd[f"lora_unet_{block}.lora_up.weight"] = torch.zeros(640, 2)
        sd[f"lora_unet_{block}.alpha"] = torch.tensor(1.0)
    write_lora(flux_root / "models", "sdxl_style.safetensors", sd)
    result = run_flux(flux_workflow("sdxl_style.safetensors"), ["dec"])
    assert not result.ok
    failure = result.failures[0]
    assert (failure.node, failure.input) == ("lora", "name")
    message = failure.message
    assert "sdxl_style.safetensors" in message
    assert "Flux.1 dev" in message
    assert "UNet LoRA (Stable Diffusion 1.x / 2.x / SDXL)" in message
    assert "Traceback" not in message


# -- Qwen-Image -----------------------------------------------------------------------------
def qwen_workflow(lora: str | None, strength: float = 1.0) -> Any:
    nodes: dict[str, Any] = {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "qwen_image.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": "qwen_2.5_vl_7b.safetensors", "type": "qwen_image"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "qwen_image_vae.safetensors"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": PROMPT}},
        "lat": {"type": "EmptyLatent", "inputs": {"width": SIZE, "height": SIZE}},
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["unet", "model"],
                "positive": ["pos", "conditioning"],
                "latent": ["lat", "latent"],
                "seed": 42,
                "steps": 3,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["vae", "vae"], "latent": ["k", "latent"]}},
    }
    if lora is not None:
        nodes["lora"] = {
            "type": "LoraLoaderModelOnly",
            "inputs": {"model": ["unet", "model"], "name": lora, "strength_model": strength},
        }
        nodes["k"]["inputs"]["model"] = ["lora", "model"]
    return nodes


def qwen_reference(pipe: Any) -> Any:
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        out = pipe(
            prompt=PROMPT,
            height=SIZE,
            width=SIZE,
            num_inference_steps=3,
            true_cfg_scale=1.0,
            generator=torch.Generator("cpu").manual_seed(42),
            output_type="np",
        ).images
    return as_tensor(out)


def _qwen_parity(
    qwen_models: Any, run_qwen: Any, name: str, sd: dict[str, torch.Tensor], strength: float = 1.0
) -> None:
    write_lora(qwen_models.root / "models", name, sd)
    before = snapshot(qwen_models.pipe.transformer)
    result = run_qwen(qwen_workflow(name, strength), ["dec", "lora"])
    ours = image_of(result)
    plain = qwen_reference(qwen_models.pipe)
    with pipe_with_lora(qwen_models.pipe, sd, strength) as pipe:
        theirs = qwen_reference(pipe)
    assert (theirs - plain).abs().max().item() > 10 * TOLERANCE
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert_same_weights(result.values["lora"]["model"].unet, before)


def test_qwen_image_comfyui_lora_equals_qwen_image_pipeline(
    qwen_models: Any, run_qwen: Any
) -> None:
    """`diffusion_model.transformer_blocks.0.attn.to_q.lora_A.weight` (the Lightning LoRAs'
    layout) on every Linear of the transformer."""
    sd = peft_lora(qwen_models.pipe.transformer, "diffusion_model.", size=0.3)
    _qwen_parity(qwen_models, run_qwen, "qwen_comfy.safetensors", sd)


def test_qwen_image_kohya_lora_equals_qwen_image_pipeline(qwen_models: Any, run_qwen: Any) -> None:
    """kohya's `lora_unet_transformer_blocks_0_attn_to_q` with alphas, at strength 0.8."""
    sd = kohya_lora(
        qwen_models.pipe.transformer, "lora_unet_", alpha=1.0, only="transformer_blocks"
    )
    _qwen_parity(qwen_models, run_qwen, "qwen_kohya.safetensors", sd, 0.8)


def test_qwen_image_diffusers_lora_equals_qwen_image_pipeline(
    qwen_models: Any, run_qwen: Any
) -> None:
    sd = peft_lora(qwen_models.pipe.transformer, "transformer.", seed=11, size=0.3)
    _qwen_parity(qwen_models, run_qwen, "qwen_peft.safetensors", sd)


def test_a_flux_lora_on_qwen_image_is_a_clear_error(qwen_models: Any, run_qwen: Any) -> None:
    sd = {
        "diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight": torch.zeros(2, 128),
        "diffusion_model.double_blocks.0.img_attn.qkv.lora_up.weight": torch.zeros(384, 2),
    }
    write_lora(qwen_models.root / "models", "flux_on_qwen.safetensors", sd)
    result = run_qwen(qwen_workflow("flux_on_qwen.safetensors"), ["dec"])
    assert not result.ok
    failure = result.failures[0]
    assert (failure.node, failure.input) == ("lora", "name")
    message = failure.message
    assert "flux_on_qwen.safetensors" in message
    assert "Qwen-Image" in message
    assert "Flux-style transformer LoRA" in message


# -- the other flow families: Easel's patched weights are diffusers' -------------------------
def original_lora(
    original: dict[str, torch.Tensor],
    *,
    prefix: str = "diffusion_model.",
    peft: bool = True,
    keep: tuple[str, ...] = ("",),
    skip: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """A LoRA on the 2-D weights of a transformer file (`original`: its keys as the file holds
    them) whose names start with one of `keep` and contain none of `skip`: PEFT's lora_A / lora_B
    or kohya's lora_down / lora_up with alphas."""
    gen = torch.Generator().manual_seed(13)
    out: dict[str, torch.Tensor] = {}
    for key, weight in sorted(original.items()):
        if not key.endswith(".weight") or weight.dim() != 2 or not key.startswith(keep):
            continue
        if any(s in key for s in skip):
            continue
        name = key.removesuffix(".weight")
        stem = prefix + (name.replace(".", "_") if prefix == "lora_unet_" else name)
        d, u = _pair(weight, gen, 0.1)
        out[f"{stem}.{'lora_A' if peft else 'lora_down'}.weight"] = d
        out[f"{stem}.{'lora_B' if peft else 'lora_up'}.weight"] = u
        if not peft:
            out[f"{stem}.alpha"] = torch.tensor(1.0)
    return out


def _qwen_image() -> tuple[Any, dict[str, torch.Tensor]]:
    t = qwen_image_family._transformer()
    return t, kohya_lora(t, "lora_unet_", alpha=1.0, only="transformer_blocks")


def _zimage() -> tuple[Any, dict[str, torch.Tensor]]:
    from tests.fixtures import lumina_family

    t = lumina_family.zimage_transformer()
    return t, peft_lora(t, "diffusion_model.", size=0.1)  # ai-toolkit's / ComfyUI's layout


def _lumina2() -> tuple[Any, dict[str, torch.Tensor]]:
    from tests.fixtures import lumina_family

    t = lumina_family.lumina2_transformer()
    return t, peft_lora(t, "transformer.", size=0.1)


def _sd35() -> tuple[Any, dict[str, torch.Tensor]]:
    from tests.fixtures import sd3_family

    t = sd3_family._transformer("large")
    return t, peft_lora(t, "transformer.", size=0.1)


def _hidream() -> tuple[Any, dict[str, torch.Tensor]]:
    from tests.fixtures import hidream_family

    t = hidream_family._transformer()
    return t, peft_lora(t, "diffusion_model.", size=0.1)


def _flux2() -> tuple[Any, dict[str, torch.Tensor]]:
    from tests.fixtures import flux2_family

    t = flux2_family._transformer(False)
    return t, original_lora(flux2_family.transformer_bfl(t))  # BFL names, lora_A / lora_B


def _chroma() -> tuple[Any, dict[str, torch.Tensor]]:
    """kohya suffixes on BFL names in the blocks (diffusers' Chroma reader drops the others
    and refuses `distilled_guidance_layer`; linear1 as for Flux.1)."""
    from tests.fixtures import chroma_family

    t = chroma_family._transformer()
    original = chroma_family.transformer_original(t)
    lora = original_lora(
        original, peft=False, keep=("double_blocks.", "single_blocks."), skip=("linear1",)
    )
    return t, lora


@pytest.mark.parametrize(
    ("family", "build"),
    [
        ("qwen-image", _qwen_image),
        ("z-image", _zimage),
        ("lumina2", _lumina2),
        ("sd3.5-large", _sd35),
        ("hidream-full", _hidream),
        ("flux2-dev", _flux2),
        ("chroma", _chroma),
    ],
)
def test_family_lora_patches_the_layers_diffusers_does(family: str, build: Any) -> None:
    """The weights Easel runs the transformer with (base + alpha / rank * up @ down per layer)
    are the effective weights of diffusers' PEFT layers after the family pipeline's
    load_lora_weights, layer for layer."""
    import copy
    import inspect

    import diffusers

    from easel.models.families.registry import by_name
    from easel.models.lora import merged_weights
    from easel.models.lora_flow import flow_lora_from_state_dict

    torch.manual_seed(0)
    transformer, sd = build()
    base = snapshot(transformer)
    weights = flow_lora_from_state_dict(sd, by_name(family), name=f"{family}.safetensors")
    names = {m: n for n, m in transformer.named_modules()}
    ours = {names[m]: w for m, w in merged_weights(transformer, "unet", ((weights, 1.0),)).items()}

    cls = getattr(diffusers, by_name(family).pipeline_class)
    required = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.default is inspect.Parameter.empty
    ]
    theirs_model = copy.deepcopy(transformer)
    pipe = cls(**{**dict.fromkeys(required), "transformer": theirs_model})
    pipe.load_lora_weights({k: v.clone() for k, v in sd.items()}, adapter_name="t")
    theirs = {
        n: m.base_layer.weight + m.get_delta_weight("t")
        for n, m in theirs_model.named_modules()
        if hasattr(m, "lora_A") and "t" in m.lora_A
    }
    assert len(theirs) >= 10
    assert set(ours) == set(theirs)
    assert max((ours[n] - theirs[n]).abs().max().item() for n in ours) <= 1e-6
    assert_same_weights(transformer, base)


def test_layers_diffusers_drops_are_reported() -> None:
    """A kohya Flux.2 file's modulation, input and final layers, which diffusers' converter
    does not know, are named in the loader's warnings rather than dropped silently."""
    from easel.models.families.registry import by_name
    from easel.models.lora_flow import flow_lora_from_state_dict
    from tests.fixtures import flux2_family

    transformer = flux2_family._transformer(False)
    sd = original_lora(flux2_family.transformer_bfl(transformer), prefix="lora_unet_", peft=False)
    assert any("double_stream_modulation_img" in k for k in sd)
    weights = flow_lora_from_state_dict(sd, by_name("flux2-dev"), name="k2.safetensors")
    assert weights.layers["unet"]  # the blocks' layers
    [note] = [w for w in weights.warnings() if "diffusers:" in w]
    assert "k2.safetensors" in note and "lora_unet_double_stream_modulation_img_lin" in note


def test_converted_files_are_cached_per_file_and_family(tmp_path: Path) -> None:
    """One conversion per (file, family): the same file for another family is converted again
    (and a file for neither is refused naming both)."""
    from easel.models.errors import ModelError
    from easel.models.families.registry import by_name
    from easel.models.lora_flow import load_flow_lora
    from tests.fixtures import lumina_family

    transformer = lumina_family.zimage_transformer()
    name = write_lora(tmp_path, "z.safetensors", peft_lora(transformer, "transformer.", size=0.1))
    path = tmp_path / "loras" / name
    first = load_flow_lora(path, by_name("z-image"))
    assert load_flow_lora(path, by_name("z-image")) is first
    other = load_flow_lora(path, by_name("lumina2"))
    assert other is not first and other.family == "lumina2"
    kohya_sd3 = kohya_lora(transformer, "lora_unet_", alpha=1.0, only="layers.0.attention")
    write_lora(tmp_path, "k.safetensors", kohya_sd3)
    with pytest.raises(ModelError) as info:
        load_flow_lora(tmp_path / "loras" / "k.safetensors", by_name("sd3.5-large"))
    message = str(info.value)
    assert "k.safetensors" in message and "Stable Diffusion 3.5 Large" in message
    assert "Lumina 2 / Z-Image transformer LoRA" in message


def test_qwen_image_template_with_its_lightning_lora_on(
    qwen_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ComfyUI's `image_qwen_image` template with its switch on (LoraLoaderModelOnly with the
    Lightning LoRA, 8 steps, cfg 1; here 2 steps and a tiny LoRA in the ComfyUI layout under the
    template's file name) gives QwenImagePipeline's image with that LoRA loaded."""
    import importlib.util
    import os
    import shutil

    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler
    from PIL import Image as PILImage

    if importlib.util.find_spec("comfyui_workflow_templates_json") is None:
        pytest.skip("the templates corpus is in the dev extra (in CI)")
    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input
    from tests.families.test_qwen_image_templates import LIGHTNING, TEMPLATE_FILES, template

    root = tmp_path / "root"
    for name, source in TEMPLATE_FILES.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(qwen_models.root / "models" / source, root / "models" / name)
    shutil.copytree(qwen_models.root / "ComfyUI", root / "ComfyUI")
    sd = peft_lora(qwen_models.pipe.transformer, "diffusion_model.", seed=17, size=0.1)
    write_lora(root / "models", LIGHTNING, sd)
    roots = [root / "models", root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))

    workflow = to_easel(template("image_qwen_image"))
    nodes = workflow["nodes"]

    def only(kind: str) -> str:
        [found] = [i for i, n in nodes.items() if n["type"] == kind]
        return found

    sampler, latent = only("KSampler"), only("EmptyLatent")
    assert nodes[only("LoraLoaderModelOnly")]["inputs"]["name"] == LIGHTNING
    set_input(workflow, f"{only('Boolean')}.value", True)
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    steps_switch = nodes[sampler]["inputs"]["steps"][0]
    set_input(workflow, f"{nodes[steps_switch]['inputs']['on_true'][0]}.value", 2)
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path)
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / saved).convert("RGB"))
    ours = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255

    inputs = nodes[sampler]["inputs"]
    shift = float(nodes[only("ModelSamplingAuraFlow")]["inputs"]["shift"])
    pipe = qwen_models.pipe
    original = pipe.scheduler
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        original.config, shift=shift, use_dynamic_shifting=False, shift_terminal=None
    )
    pipe.set_progress_bar_config(disable=True)

    def reference(with_lora: Any) -> Any:
        with torch.no_grad():
            out = with_lora(
                prompt=nodes[inputs["positive"][0]]["inputs"]["text"],
                height=SIZE,
                width=SIZE,
                num_inference_steps=2,
                true_cfg_scale=1.0,
                generator=torch.Generator("cpu").manual_seed(int(inputs["seed"])),
                output_type="np",
            ).images
        return as_tensor(out)

    try:
        plain = reference(pipe)
        with pipe_with_lora(pipe, sd) as with_lora:
            theirs = reference(with_lora)
    finally:
        pipe.scheduler = original
    assert (theirs - plain).abs().max().item() > 10 * TOLERANCE
    # the saved PNG is 8-bit: half a step of rounding on top of the parity tolerance
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255
