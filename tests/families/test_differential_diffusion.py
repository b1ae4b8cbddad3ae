"""DifferentialDiffusion: a soft noise mask as a map of how much to change. A hard (0/1) mask
gives plain inpainting's image; a soft one differs, its threshold falling with the noise."""

from __future__ import annotations

from typing import Any

import torch

from easel.models.sampling import Inpaint, differential_mask
from tests.families.workflows import image_of, txt2img


def masked_run(value: float, differential: float | None) -> dict[str, Any]:
    nodes = txt2img("sd1.safetensors", steps=4)
    nodes["img"] = {"type": "EmptyImage", "inputs": {"width": 64, "height": 64, "color": 0x3366AA}}
    nodes["enc"] = {
        "type": "VAEEncode",
        "inputs": {"vae": ["ckpt", "vae"], "image": ["img", "image"]},
    }
    nodes["mask"] = {"type": "SolidMask", "inputs": {"value": value, "width": 64, "height": 64}}
    nodes["noise"] = {
        "type": "SetLatentNoiseMask",
        "inputs": {"latent": ["enc", "latent"], "mask": ["mask", "mask"]},
    }
    nodes["k"]["inputs"]["latent"] = ["noise", "latent"]
    if differential is not None:
        nodes["dd"] = {
            "type": "DifferentialDiffusion",
            "inputs": {"model": ["ckpt", "model"], "strength": differential},
        }
        nodes["k"]["inputs"]["model"] = ["dd", "model"]
    return nodes


def test_a_hard_mask_is_plain_inpainting(sd_models: Any, run_sd: Any) -> None:
    sd_models("sd1")
    plain = image_of(run_sd(masked_run(1.0, None), ["dec"]))
    differential = image_of(run_sd(masked_run(1.0, 1.0), ["dec"]))
    assert torch.equal(plain, differential)


def test_a_soft_mask_changes_less_early(sd_models: Any, run_sd: Any) -> None:
    sd_models("sd1")
    plain = image_of(run_sd(masked_run(0.5, None), ["dec"]))
    differential = image_of(run_sd(masked_run(0.5, 1.0), ["dec"]))
    assert (plain - differential).abs().max().item() > 1e-3


def test_threshold_falls_with_the_timesteps() -> None:
    mask = torch.tensor([0.0, 0.3, 0.6, 1.0]).reshape(1, 1, 1, 4)
    timesteps = torch.tensor([900.0, 600.0, 300.0])
    inpaint = Inpaint(mask=mask, source=None, differential=1.0)
    early = differential_mask(mask, timesteps, 1, inpaint)  # threshold 600/900
    late = differential_mask(mask, timesteps, 2, inpaint)  # threshold 300/900
    assert early.flatten().tolist() == [0.0, 0.0, 0.0, 1.0]
    assert late.flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    half = differential_mask(mask, timesteps, 1, Inpaint(mask=mask, source=None, differential=0.5))
    assert torch.allclose(half, 0.5 * early + 0.5 * mask)
