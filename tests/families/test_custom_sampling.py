"""ComfyUI's custom sampling (SamplerCustomAdvanced and its pieces) on the tiny Flux and
Stable Diffusion models: the same sampler, noise levels and guidance give KSampler's image;
split noise levels resume where they stopped; DualCFG, CFGNorm and ManualSigmas do what
ComfyUI's do; a sampler that cannot follow given noise levels is a clear error."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.families.test_flux_parity import split_workflow
from tests.families.workflows import image_of, txt2img
from tests.fixtures import flux_family

flux_root = flux_family.flux_root
flux_models = flux_family.flux_models
flux_manager = flux_family.flux_manager
run_flux = flux_family.run_flux

CLOSE = 1e-5


def custom(
    nodes: dict[str, Any],
    *,
    guider: dict[str, Any],
    sampler: str = "euler",
    sigmas: dict[str, Any],
    noise: dict[str, Any] | None = None,
    latent: list[str] | None = None,
) -> dict[str, Any]:
    """`nodes` with KSampler "k" replaced by SamplerCustomAdvanced and its pieces."""
    out = {name: spec for name, spec in nodes.items() if name != "k"}
    out["noise"] = noise or {"type": "RandomNoise", "inputs": {"noise_seed": 42}}
    out["guider"] = guider
    out["sampler"] = {"type": "KSamplerSelect", "inputs": {"sampler_name": sampler}}
    out["sigmas"] = sigmas
    out["k"] = {
        "type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["noise", "noise"],
            "guider": ["guider", "guider"],
            "sampler": ["sampler", "sampler"],
            "sigmas": ["sigmas", "sigmas"],
            "latent_image": latent or ["lat", "latent"],
        },
    }
    out["dec"] = {**out["dec"], "inputs": {**out["dec"]["inputs"], "latent": ["k", "output"]}}
    return out


def basic_scheduler(model: list[str], scheduler: str, steps: int, denoise: float = 1.0) -> Any:
    return {
        "type": "BasicScheduler",
        "inputs": {"model": model, "scheduler": scheduler, "steps": steps, "denoise": denoise},
    }


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "uni_pc"])
def test_flux_custom_sampling_equals_ksampler(sampler: str, run_flux: Any) -> None:
    """schnell (a fixed shift): BasicGuider + BasicScheduler "simple" is KSampler at cfg 1."""
    nodes = split_workflow("schnell", steps=3, sampler_name=sampler)
    ksampler = image_of(run_flux(nodes, ["dec"]))
    graph = custom(
        nodes,
        guider={
            "type": "BasicGuider",
            "inputs": {"model": ["unet", "model"], "conditioning": ["pos", "conditioning"]},
        },
        sampler=sampler,
        sigmas=basic_scheduler(["unet", "model"], "simple", 3),
    )
    ours = image_of(run_flux(graph, ["dec"]))
    assert float(ours.std()) > 0.01
    assert (ours - ksampler).abs().max().item() <= CLOSE


def test_flux_sigmas_are_shifted_flow_levels(run_flux: Any) -> None:
    nodes = {
        "unet": split_workflow("schnell")["unet"],
        "sigmas": basic_scheduler(["unet", "model"], "simple", 4),
        "manual": {"type": "ManualSigmas", "inputs": {"sigmas": "1.0, 0.75, 0.5, 0.25, 0"}},
    }
    result = run_flux(nodes, ["sigmas", "manual"])
    levels = result.values["sigmas"]["sigmas"]
    # schnell has no shift: FluxPipeline's linspace(1, 1/n, n), then 0
    assert torch.allclose(levels, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    assert torch.equal(result.values["manual"]["sigmas"], levels)


def test_split_sigmas_resume_where_they_stopped(run_flux: Any) -> None:
    """High levels with noise, then the low ones without: the full run's image."""
    nodes = split_workflow("schnell", steps=4)
    guider = {
        "type": "BasicGuider",
        "inputs": {"model": ["unet", "model"], "conditioning": ["pos", "conditioning"]},
    }
    full = custom(nodes, guider=guider, sigmas=basic_scheduler(["unet", "model"], "simple", 4))
    whole = image_of(run_flux(full, ["dec"]))
    split = custom(nodes, guider=guider, sigmas=basic_scheduler(["unet", "model"], "simple", 4))
    split["cut"] = {"type": "SplitSigmas", "inputs": {"sigmas": ["sigmas", "sigmas"], "step": 2}}
    split["k"]["inputs"]["sigmas"] = ["cut", "high_sigmas"]
    split["quiet"] = {"type": "DisableNoise", "inputs": {}}
    split["k2"] = {
        "type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["quiet", "noise"],
            "guider": ["guider", "guider"],
            "sampler": ["sampler", "sampler"],
            "sigmas": ["cut", "low_sigmas"],
            "latent_image": ["k", "output"],
        },
    }
    split["dec"]["inputs"]["latent"] = ["k2", "output"]
    resumed = image_of(run_flux(split, ["dec"]))
    assert (resumed - whole).abs().max().item() <= 1e-4


def test_denoised_output_is_the_output_when_levels_end_at_zero(run_flux: Any) -> None:
    nodes = custom(
        split_workflow("schnell", steps=2),
        guider={
            "type": "BasicGuider",
            "inputs": {"model": ["unet", "model"], "conditioning": ["pos", "conditioning"]},
        },
        sigmas=basic_scheduler(["unet", "model"], "simple", 2),
    )
    values = run_flux(nodes, ["k"]).values["k"]
    assert torch.allclose(values["output"]["samples"], values["denoised_output"]["samples"])


def sd_custom(guider: dict[str, Any], sigmas: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return custom(txt2img("sd1.safetensors"), guider=guider, sigmas=sigmas, **kwargs)


CFG = {
    "type": "CFGGuider",
    "inputs": {
        "model": ["ckpt", "model"],
        "positive": ["pos", "conditioning"],
        "negative": ["neg", "conditioning"],
        "cfg": 5.0,
    },
}


def test_sd_image_to_image_equals_ksampler(sd_models: Any, run_sd: Any) -> None:
    """An eps model, part of the schedule (denoise 0.6): noise is added at the first level
    as KSampler adds it, and the same levels give the same image."""
    sd_models("sd1")
    base = txt2img("sd1.safetensors", steps=5)
    base["src"] = {
        "type": "VAEEncode",
        "inputs": {"vae": ["ckpt", "vae"], "image": ["first", "image"]},
    }
    base["first"] = {
        "type": "VAEDecode",
        "inputs": {"vae": ["ckpt", "vae"], "latent": ["k0", "latent"]},
    }
    base["k0"] = {**base["k"], "inputs": {**base["k"]["inputs"], "seed": 7}}
    base["k"]["inputs"].update(latent=["src", "latent"], denoise=0.6)
    ksampler = image_of(run_sd(base, ["dec"]))
    graph = custom(
        base,
        guider=CFG,
        sigmas=basic_scheduler(["ckpt", "model"], "normal", 5, 0.6),
        latent=["src", "latent"],
    )
    ours = image_of(run_sd(graph, ["dec"]))
    assert (ours - ksampler).abs().max().item() <= CLOSE


def test_dual_cfg_with_one_conditioning_twice_is_cfg(sd_models: Any, run_sd: Any) -> None:
    sd_models("sd1")
    sigmas = basic_scheduler(["ckpt", "model"], "normal", 3)
    cfg = image_of(run_sd(sd_custom(CFG, sigmas), ["dec"]))
    dual = {
        "type": "DualCFGGuider",
        "inputs": {
            "model": ["ckpt", "model"],
            "cond1": ["pos", "conditioning"],
            "cond2": ["pos", "conditioning"],
            "negative": ["neg", "conditioning"],
            "cfg_conds": 3.0,
            "cfg_cond2_negative": 5.0,
            "style": "regular",
        },
    }
    ours = image_of(run_sd(sd_custom(dual, sigmas), ["dec"]))
    assert (ours - cfg).abs().max().item() <= CLOSE
    other = {**dual, "inputs": {**dual["inputs"], "cond2": ["neg", "conditioning"]}}
    assert (image_of(run_sd(sd_custom(other, sigmas), ["dec"])) - cfg).abs().max().item() > 1e-3


def test_cfg_norm_limits_the_guided_estimate() -> None:
    from easel.models.guidance import cfg_norm

    cond = torch.randn(1, 4, 8, 8)
    guided = cond * 3.0  # CFG overshooting the conditional estimate
    patched = cfg_norm(1.0)(guided, cond)
    assert torch.allclose(patched.norm(dim=1), cond.norm(dim=1), atol=1e-5)
    assert torch.allclose(cfg_norm(1.0)(cond * 0.5, cond), cond * 0.5)  # never scaled up
    assert torch.allclose(cfg_norm(0.5)(cond * 0.5, cond), cond * 0.25)


def test_cfg_norm_changes_a_guided_run(sd_models: Any, run_sd: Any) -> None:
    sd_models("sd1")
    sigmas = basic_scheduler(["ckpt", "model"], "normal", 3)
    plain = image_of(run_sd(sd_custom(CFG, sigmas), ["dec"]))
    graph = sd_custom(CFG, sigmas)
    graph["norm"] = {"type": "CFGNorm", "inputs": {"model": ["ckpt", "model"], "strength": 1.0}}
    graph["guider"] = {**CFG, "inputs": {**CFG["inputs"], "model": ["norm", "model"]}}
    normed = image_of(run_sd(graph, ["dec"]))
    assert bool(torch.isfinite(normed).all())
    assert (normed - plain).abs().max().item() > 1e-3


def test_a_sampler_that_cannot_follow_sigmas_is_named(sd_models: Any, run_sd: Any) -> None:
    sd_models("sd1")
    graph = sd_custom(CFG, basic_scheduler(["ckpt", "model"], "normal", 3), sampler="heun")
    result = run_sd(graph, ["dec"])
    assert result.status == "failed"
    (failure,) = [f for f in result.failures if f.node == "k"]
    assert failure.input == "sampler" and "heun" in failure.message
    assert "euler" in failure.message


def test_manual_sigmas_reject_text_without_numbers(run_flux: Any) -> None:
    result = run_flux({"m": {"type": "ManualSigmas", "inputs": {"sigmas": "high, low"}}}, ["m"])
    assert result.status == "failed"
    assert "no numbers" in result.failures[0].message


def test_lcm_on_a_flow_model_is_seeded_and_its_own(run_flux: Any) -> None:
    """ComfyUI's lcm on flow models (FlowMatchLCMScheduler): each step's denoised estimate,
    noised afresh from the run's seeded generator."""
    lcm = split_workflow("schnell", steps=3, sampler_name="lcm")
    first = image_of(run_flux(lcm, ["dec"]))
    lcm["k"]["inputs"]["seed"] = 43
    other_seed = image_of(run_flux(lcm, ["dec"]))
    euler = image_of(run_flux(split_workflow("schnell", steps=3), ["dec"]))
    assert (first - other_seed).abs().max().item() > 1e-3
    assert bool(torch.isfinite(first).all()) and float(first.std()) > 0.01
    assert (first - euler).abs().max().item() > 1e-3


def test_res_multistep_on_flux_is_ksamplers_and_custom_samplings(run_flux: Any) -> None:
    nodes = split_workflow("schnell", steps=4, sampler_name="res_multistep")
    ksampler = image_of(run_flux(nodes, ["dec"]))
    euler = image_of(run_flux(split_workflow("schnell", steps=4), ["dec"]))
    graph = custom(
        nodes,
        guider={
            "type": "BasicGuider",
            "inputs": {"model": ["unet", "model"], "conditioning": ["pos", "conditioning"]},
        },
        sampler="res_multistep",
        sigmas=basic_scheduler(["unet", "model"], "simple", 4),
    )
    custom_image = image_of(run_flux(graph, ["dec"]))
    assert float(ksampler.std()) > 0.01
    assert (ksampler - custom_image).abs().max().item() <= CLOSE
    assert (ksampler - euler).abs().max().item() > 1e-4


def test_res_multistep_on_an_eps_model_is_refused(sd_models: Any, run_sd: Any) -> None:
    sd_models("sd1")
    result = run_sd(txt2img("sd1.safetensors", sampler_name="res_multistep"), ["dec"])
    assert result.status == "failed"
    assert "flow-matching models only" in result.failures[0].message


def test_euler_ancestral_on_flux_runs_seeded(run_flux: Any) -> None:
    nodes = split_workflow("schnell", steps=3, sampler_name="euler_ancestral")
    first = image_of(run_flux(nodes, ["dec"]))
    nodes["k"]["inputs"]["seed"] = 43
    other = image_of(run_flux(nodes, ["dec"]))
    assert bool(torch.isfinite(first).all()) and float(first.std()) > 0.01
    assert (first - other).abs().max().item() > 1e-3
