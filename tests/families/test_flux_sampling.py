"""Flow matching in the sampler core, on the tiny Flux models: the flow variants of the sampler
names equal FluxPipeline with the same diffusers scheduler; impossible sampler x schedule x
family combinations are clear errors; the shift nodes; ComfyUI files with the Flux nodes."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.families.test_flux_parity import PROMPT, TOLERANCE, reference, split_workflow
from tests.families.workflows import image_of
from tests.fixtures import flux_family

# Variants of the family's behaviour (samplers, layouts, edge cases): run with --slow.
pytestmark = pytest.mark.slow

flux_root = flux_family.flux_root
flux_models = flux_family.flux_models
flux_manager = flux_family.flux_manager
run_flux = flux_family.run_flux

# FluxPipeline computes mu and hands it to these schedulers, which then shift by exp(mu).
DYNAMIC = {"use_dynamic_shifting": True, "time_shift_type": "exponential"}
PIPELINE_SCHEDULERS = {
    "dpmpp_2m": (
        "DPMSolverMultistepScheduler",
        {
            "algorithm_type": "dpmsolver++",
            "solver_order": 2,
            "use_flow_sigmas": True,
            "prediction_type": "flow_prediction",
            **DYNAMIC,
        },
    ),
    "uni_pc": (
        "UniPCMultistepScheduler",
        {"use_flow_sigmas": True, "prediction_type": "flow_prediction", **DYNAMIC},
    ),
}


@pytest.mark.parametrize("sampler", sorted(PIPELINE_SCHEDULERS))
def test_flow_samplers_equal_flux_pipeline_with_that_scheduler(
    sampler: str, flux_models: Any, run_flux: Any
) -> None:
    import diffusers
    from diffusers import FluxPipeline

    class_name, options = PIPELINE_SCHEDULERS[sampler]
    pipe = flux_models["dev"].pipe
    scheduler = getattr(diffusers, class_name)(**options)
    other = FluxPipeline(**{**pipe.components, "scheduler": scheduler})
    ours = image_of(
        run_flux(split_workflow("dev", steps=4, sampler_name=sampler, scheduler="normal"), ["dec"])
    )
    theirs = reference(other, prompt=PROMPT, num_inference_steps=4, guidance_scale=3.5)
    euler = image_of(run_flux(split_workflow("dev", steps=4), ["dec"]))
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert (ours - euler).abs().max().item() > TOLERANCE  # another sampler, another image


@pytest.mark.parametrize(
    "sampler,schedule",
    [("heun", "normal"), ("dpmpp_2m_sde", "normal"), ("euler", "karras"), ("euler", "beta")],
)
def test_every_flow_pair_samples_an_image(sampler: str, schedule: str, run_flux: Any) -> None:
    image = image_of(
        run_flux(
            split_workflow("schnell", steps=2, sampler_name=sampler, scheduler=schedule), ["dec"]
        )
    )
    assert image.shape == (1, 3, 64, 64)
    assert bool(torch.isfinite(image).all()) and float(image.std()) > 0.01


def test_sgm_uniform_is_simple_on_flow_models(run_flux: Any) -> None:
    simple = image_of(run_flux(split_workflow("dev"), ["dec"]))
    sgm = image_of(run_flux(split_workflow("dev", scheduler="sgm_uniform"), ["dec"]))
    assert torch.equal(simple, sgm)


@pytest.mark.parametrize(
    "sampler,schedule,words",
    [
        ("lms", "normal", "has no flow-matching variant"),
        ("heun", "karras", "cannot use the 'karras' schedule"),
    ],
)
def test_impossible_flow_combination_is_a_node_error(
    sampler: str, schedule: str, words: str, run_flux: Any
) -> None:
    result = run_flux(split_workflow("dev", sampler_name=sampler, scheduler=schedule), ["dec"])
    assert result.status == "failed"
    failure = result.failures[0]
    assert failure.node == "k" and failure.input == "sampler_name"
    assert words in failure.message


def test_fixed_shift_nodes(run_flux: Any, flux_models: Any) -> None:
    """ModelSamplingSD3 / AuraFlow set a fixed shift: at shift 1 on schnell (whose own shift is
    1) nothing changes; shift 3 changes the image as the pipeline's shift 3 does."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    plain = image_of(run_flux(split_workflow("schnell", steps=3), ["dec"]))
    results = {}
    for node_type, shift in (("ModelSamplingSD3", 1.0), ("ModelSamplingAuraFlow", 3.0)):
        nodes = split_workflow("schnell", steps=3)
        nodes["ms"] = {"type": node_type, "inputs": {"model": ["unet", "model"], "shift": shift}}
        nodes["k"]["inputs"]["model"] = ["ms", "model"]
        results[node_type] = image_of(run_flux(nodes, ["dec"]))
    assert torch.equal(results["ModelSamplingSD3"], plain)
    pipe = flux_models["schnell"].pipe
    shifted = FluxPipeline(
        **{
            **pipe.components,
            "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=False),
        }
    )
    theirs = reference(shifted, prompt=PROMPT, num_inference_steps=3, guidance_scale=0.0)
    assert (results["ModelSamplingAuraFlow"] - theirs).abs().max().item() <= TOLERANCE


def test_comfy_api_prompt_with_flux_nodes_equals_the_easel_workflow(run_flux: Any) -> None:
    """A ComfyUI API prompt of the Flux templates' shape (UNETLoader, DualCLIPLoader with its
    device widget, VAELoader, CLIPTextEncodeFlux, FluxGuidance, ModelSamplingFlux,
    EmptySD3LatentImage, KSampler) converts and gives the Easel workflow's image."""
    from easel.comfy.api_format import convert_prompt

    prompt = {
        "1": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "flux-dev.safetensors", "weight_dtype": "default"},
        },
        "2": {
            "class_type": "DualCLIPLoader",
            "inputs": {
                "clip_name1": "clip_l.safetensors",
                "clip_name2": "t5xxl.safetensors",
                "type": "flux",
                "device": "default",
            },
        },
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "4": {
            "class_type": "CLIPTextEncodeFlux",
            "inputs": {"clip": ["2", 0], "clip_l": PROMPT, "t5xxl": PROMPT, "guidance": 2.0},
        },
        "5": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["4", 0], "guidance": 3.5}},
        "6": {
            "class_type": "ModelSamplingFlux",
            "inputs": {
                "model": ["1", 0],
                "max_shift": 1.15,
                "base_shift": 0.5,
                "width": 64,
                "height": 64,
            },
        },
        "7": {
            "class_type": "EmptySD3LatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "8": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["6", 0],
                "positive": ["5", 0],
                "negative": ["5", 0],
                "latent_image": ["7", 0],
                "seed": 42,
                "steps": 3,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
            },
        },
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["3", 0]}},
    }
    workflow = convert_prompt(prompt)
    assert workflow["nodes"]["2"] == {
        "type": "DualTextEncoderLoader",
        "inputs": {"name1": "clip_l.safetensors", "name2": "t5xxl.safetensors", "type": "flux"},
    }
    ours = image_of(run_flux(workflow["nodes"], ["9"]), "9")
    easel = image_of(run_flux(split_workflow("dev"), ["dec"]))
    assert torch.equal(ours, easel)


def test_comfy_types_without_a_family_are_refused_at_conversion() -> None:
    from easel.comfy.api_format import convert_prompt
    from easel.core.graph import WorkflowError

    prompt = {
        "1": {
            "class_type": "DualCLIPLoader",
            "inputs": {
                "clip_name1": "a.safetensors",
                "clip_name2": "b.safetensors",
                "type": "hidream",
            },
        }
    }
    with pytest.raises(WorkflowError) as caught:
        convert_prompt(prompt)
    assert [(p.node, p.input) for p in caught.value.problems] == [("1", "type")]
    assert (
        "'hidream' has no Easel equivalent (convertible: flux" in caught.value.problems[0].message
    )


def test_text_encoders_are_offloaded_after_encoding(flux_root: Any, flux_models: Any) -> None:
    """The manager's policy: after a Flux prompt is encoded, both text encoders are handed to
    `offload` (on a GPU they go back to the CPU); with the policy off, none is."""
    from easel.models import flux_loading
    from easel.models.manager import ModelManager
    from easel.models.text import encode_text

    class Recording(ModelManager):
        offloaded: list[Any]

        def offload(self, module: Any) -> Any:
            self.offloaded.append(module)
            return module

    manager = Recording(
        [flux_root / "models", flux_root / "ComfyUI"], device="cpu", dtype=torch.float32
    )
    manager.offloaded = []
    text = flux_root / "models" / "text_encoders"
    clip = flux_loading.flux_clip(
        "c", [text / "clip_l.safetensors", text / "t5xxl.safetensors"], manager
    )
    encode_text(clip, PROMPT)
    assert [id(m) for m in manager.offloaded] == [id(part.model) for part in clip.parts]
    manager.offloaded = []
    manager.offload_text_encoders_after_use = False
    encode_text(clip, PROMPT)
    assert manager.offloaded == []


def test_fp8_weight_dtype_stores_fp8_and_computes_in_fp32(flux_manager: Any, run_flux: Any) -> None:
    """UNETLoader's weight_dtype fp8_e4m3fn: weights kept in fp8 (diffusers' layerwise
    casting), computed in the manager's dtype; the image stays close to the fp32 one."""
    default = image_of(run_flux(split_workflow("dev"), ["dec"]))
    nodes = split_workflow("dev")
    nodes["unet"]["inputs"]["weight_dtype"] = "fp8_e4m3fn"
    result = run_flux(nodes, ["dec", "unet"])
    fp8 = image_of(result)
    module = result.values["unet"]["model"].unet
    assert module.transformer_blocks[0].attn.to_q.weight.dtype == torch.float8_e4m3fn
    assert bool(torch.isfinite(fp8).all())
    assert 0 < (fp8 - default).abs().max().item() < 0.1


def test_manager_holds_each_flux_module(flux_manager: Any, run_flux: Any) -> None:
    """Every Flux module is held on its own (placed, offloaded and described by the manager),
    not only inside the loaders' tuples."""
    image_of(run_flux(split_workflow("schnell", steps=1), ["dec"]))
    classes = {row["class"] for row in flux_manager.describe()}
    assert {"FluxTransformer2DModel", "CLIPTextModel", "T5EncoderModel", "AutoencoderKL"} <= classes


def test_comfy_fp8_scaled_files_load(flux_root: Any, flux_models: Any, run_flux: Any) -> None:
    """ComfyUI's "fp8_scaled" files (fp8 weights, a `scale_weight` per layer, a `scaled_fp8`
    marker) load with the scales multiplied back out: the image is close to the full-precision
    one, and not the one of the unscaled fp8 numbers."""
    from safetensors.torch import load_file, save_file

    source = load_file(str(flux_root / "models" / "diffusion_models" / "flux-dev.safetensors"))
    scaled: dict[str, Any] = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}
    for key, value in source.items():
        if key.endswith(".weight") and value.dim() == 2:
            scale = value.abs().max().float() / 448
            scaled[key] = (value / scale).to(torch.float8_e4m3fn)
            scaled[key.removesuffix("weight") + "scale_weight"] = scale
        else:
            scaled[key] = value
    target = flux_root / "models" / "diffusion_models" / "flux-dev-fp8-scaled.safetensors"
    save_file(scaled, str(target))
    full = image_of(run_flux(split_workflow("dev"), ["dec"]))
    nodes = split_workflow("dev")
    nodes["unet"]["inputs"]["name"] = target.name
    fp8 = image_of(run_flux(nodes, ["dec"]))
    assert 0 < (fp8 - full).abs().max().item() < 0.05
    from easel.models.flux_loading import dequantize_scaled_fp8

    restored = dequantize_scaled_fp8(scaled)
    assert "scaled_fp8" not in restored and not any(k.endswith("scale_weight") for k in restored)
    key = "double_blocks.0.img_attn.qkv.weight"
    error = (restored[key] - source[key]).abs().max() / source[key].abs().max()
    assert float(error) < 0.07  # fp8 e4m3's relative precision, scaled back
