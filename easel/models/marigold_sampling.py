"""Image-to-image velocity sampling, the model sampling Marigold v2 is trained with (ComfyUI's
IMG_TO_IMG_VELOCITY: ModelSamplingAuraFlow with `sampling` "img_to_img_velocity").

A flow model normally sees x_s = (1 - s) x0 + s noise and predicts the velocity noise - x0, so
its denoised estimate at level s is x_s - s * v. Under this kind the sample starts from the input
latent itself (no noise is mixed in, whatever the noise source says) and the network's output is
the whole way from its input to the target: denoised = x - v, at any level s (the level only
reaches the network as its timestep).

Easel's sampler loop (easel.models.sampling.denoise) steps with flow velocities. The flow
velocity whose denoised estimate at level s is x - v is (x - (x - v)) / s = v / s, so each
network output is divided by its level and every flow sampler then runs unchanged (k-diffusion's
samplers, which ComfyUI runs, step with (x - denoised) / s: the same quantity). With the levels
"0.5, 0" of the Marigold templates one Euler step lands exactly on x - v.
"""

from __future__ import annotations

from typing import Any

FLOW = "flow"
IMG_TO_IMG_VELOCITY = "img_to_img_velocity"
# ModelSamplingAuraFlow's `sampling` choices (ComfyUI's, in its order)
KINDS = (FLOW, IMG_TO_IMG_VELOCITY)
# the ModelHandle.sampling entry that carries a kind other than plain flow
KEY = "sampling_kind"


def start_latent(latent: Any, noise: Any) -> Any:
    """The sample the loop starts from: the input latent as it is (zeros for none)."""
    import torch

    return latent if latent is not None else torch.zeros_like(noise)


def as_flow_velocity(output: Any, sigma: float) -> Any:
    """The flow velocity the sampler steps with for a network `output` at level `sigma`: the
    one whose denoised estimate, x - sigma * velocity, is x - output. A step from level 0 does
    not move (ComfyUI's sampler would divide by 0 there)."""
    if sigma <= 0.0:
        return output * 0.0
    return output / sigma
