"""Skip Layer Guidance (ComfyUI's SkipLayerGuidanceDiT / SkipLayerGuidanceDiTSimple /
SkipLayerGuidanceSD3; diffusers' StableDiffusion3Pipeline `skip_guidance_layers`): guidance
away from the prediction the transformer makes with some of its blocks left out.

A `SkipLayerGuidance` is a post-CFG patch kept on the ModelHandle (`post_cfg`, so it runs in
order with CFGNorm). The sampler loop (easel.models.sampling.denoise) hands it a `Step` (the
network adapter, its input, the positive's conditioning, the noise level):

- the DiT way (`uncond` False): between the noise levels `sigma_start` and `sigma_end` one
  more call of the positive with the blocks skipped, and the denoised estimate moves by
  `scale * (cond - cond_skipped)`; `rescaling` then scales it towards the conditional
  estimate's standard deviation (ComfyUI's rescaling_scale);
- the Simple way (`uncond` True): the negative's own pass runs with the blocks skipped
  (`uncond_skip`), nothing is added after CFG.

A block is skipped by replacing its `forward`, for the one call, with the identity on the
hidden states (what diffusers' SD3 transformer does for `skip_layers`, and what ComfyUI's
"dit" block replacements returning their arguments do). The transformer is shared, so the
replacement is undone when the call returns, also on error (Easel's executor runs one job at
a time: no other call sees it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from easel.models.errors import ModelError

# A family's network adapter (Family.network) -> the transformer's double-stream (joint) and
# single-stream block lists, as ComfyUI's "double_block" / "single_block" replacements index
# them; None where the model has no blocks of that kind.
BLOCKS: dict[str, tuple[str | None, str | None]] = {
    "sd3": ("transformer_blocks", None),  # SD3 / 3.5's joint_blocks
    "flux": ("transformer_blocks", "single_transformer_blocks"),  # Flux.1's double / single
    "chroma": ("transformer_blocks", "single_transformer_blocks"),  # as Flux.1's
}


@dataclass(frozen=True)
class Step:
    """What a skip-layer patch needs of the step being taken: the network adapter and its
    input `x` (one batch), timestep `t`, the positive's conditioning, the noise level, the
    prediction type and the current sample."""

    network: Any
    x: Any
    t: Any
    cond: Any
    sigma: float
    prediction: str
    latents: Any


@dataclass(frozen=True, eq=False)
class SkipLayerGuidance:
    """Blocks to skip (`double`, `single`: indices into the family's block lists) between
    the noise levels `sigma_start` (the higher) and `sigma_end`, added after CFG at `scale`
    with ComfyUI's `rescaling`, or (`uncond`) on the negative's pass."""

    double: tuple[int, ...]
    single: tuple[int, ...]
    sigma_start: float
    sigma_end: float
    scale: float = 0.0
    rescaling: float = 0.0
    uncond: bool = False

    def active(self, sigma: float) -> bool:
        return self.sigma_end <= sigma <= self.sigma_start

    def __call__(self, denoised: Any, cond_denoised: Any, step: Step | None = None) -> Any:
        """The guided denoised estimate after this patch (unchanged outside the window)."""
        if self.uncond or step is None or self.scale <= 0 or not self.active(step.sigma):
            return denoised
        from easel.models.guidance import to_denoised

        with skipping(step.network, self.double, self.single):
            skipped = step.network(step.x, step.t, step.cond)
        skipped = to_denoised(step.prediction, step.latents, skipped, step.sigma)
        denoised = denoised + (cond_denoised - skipped) * self.scale
        if self.rescaling != 0:
            factor = cond_denoised.std() / denoised.std()
            denoised = denoised * (self.rescaling * factor + (1 - self.rescaling))
        return denoised


def apply(patch: Any, denoised: Any, cond_denoised: Any, step: Step) -> Any:
    """Run one post-CFG patch: a skip-layer patch gets the step, the others (CFGNorm) not."""
    if isinstance(patch, SkipLayerGuidance):
        return patch(denoised, cond_denoised, step)
    return patch(denoised, cond_denoised)


def uncond_skip(patches: Sequence[Any], sigma: float) -> SkipLayerGuidance | None:
    """The Simple patch whose blocks the negative's pass skips at `sigma` (the last one
    given, as a later ComfyUI calc_cond_batch function wraps an earlier), or None."""
    found = None
    for patch in patches:
        if isinstance(patch, SkipLayerGuidance) and patch.uncond and patch.active(sigma):
            found = patch
    return found


def has_uncond(patches: Sequence[Any]) -> bool:
    return any(isinstance(p, SkipLayerGuidance) and p.uncond for p in patches)


def blocks_of(transformer: Any, network: str) -> tuple[Any, Any]:
    """The transformer's double and single block lists (None where it has none)."""
    double_attr, single_attr = BLOCKS[network]
    double = getattr(transformer, double_attr) if double_attr else None
    single = getattr(transformer, single_attr) if single_attr else None
    return double, single


def _identity(*args: Any, **kwargs: Any) -> Any:
    """A skipped block, its input unchanged: (encoder_hidden_states, hidden_states) for a block
    given both (SD3's joint blocks, Flux.1's double and single, Chroma's double), the
    hidden states alone for one given them alone (Chroma's single blocks, on the joint
    sequence)."""
    hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
    if "encoder_hidden_states" in kwargs:
        return kwargs["encoder_hidden_states"], hidden
    if len(args) > 1:
        return args[1], hidden
    return hidden


@contextmanager
def skipping(network: Any, double: Sequence[int], single: Sequence[int]) -> Iterator[None]:
    """While inside, the network adapter's transformer skips the listed blocks."""
    transformer = getattr(network, "transformer", None)
    kind = getattr(getattr(network, "family", None), "network", None)
    if transformer is None or kind not in BLOCKS:
        raise ModelError(f"the {kind!r} network cannot skip layers")
    double_blocks, single_blocks = blocks_of(transformer, kind)
    chosen = []
    for blocks, indices in ((double_blocks, double), (single_blocks, single)):
        if blocks is not None:
            chosen += [blocks[i] for i in indices if i < len(blocks)]
    # a block's own `forward` attribute (a hook wrapping it) is put back as it was
    saved = [vars(block).get("forward") for block in chosen]
    for block in chosen:
        block.forward = _identity
    try:
        yield
    finally:
        for block, forward in zip(chosen, saved, strict=True):
            if forward is not None:
                block.forward = forward
            elif "forward" in vars(block):
                del block.forward


def parse_layers(text: str) -> tuple[int, ...]:
    """The block indices in `text`: every run of digits, as ComfyUI reads them."""
    return tuple(int(value) for value in re.findall(r"\d+", text))


def percent_to_sigma(config: dict[str, Any], percent: float) -> float:
    """ComfyUI's percent_to_sigma for a flow model: 1 at 0 %, 0 at 100 %, else the shifted
    level of 1 - percent (a fixed `shift`, or the exponential shift at `mu`; a Flux model with
    a resolution-dependent shift and no ModelSamplingFlux uses mu = `max_shift`, ComfyUI's
    FLUX.1-dev shift of 1.15)."""
    if percent <= 0.0:
        return 1.0
    if percent >= 1.0:
        return 0.0
    t = 1.0 - percent
    mu = config.get("mu")
    if mu is None and config.get("use_dynamic_shifting"):
        mu = config.get("max_shift", 1.15)
    shift = math.exp(float(mu)) if mu is not None else float(config.get("shift", 1.0))
    return shift * t / (1 + (shift - 1) * t)


def predict(network: Any, x: Any, t: Any, cond: Any, skip: SkipLayerGuidance | None) -> Any:
    """The network's prediction for `cond`, with `skip`'s blocks skipped when given."""
    if skip is None:
        return network(x, t, cond)
    with skipping(network, skip.double, skip.single):
        return network(x, t, cond)
