"""How the predictions for a step's conditionings combine into one: classifier-free guidance,
one conditioning alone, ComfyUI's DualCFGGuider, and post-CFG patches such as CFGNorm.

`denoise` (easel.models.sampling) runs the network once per conditioning of a `Guidance`
(batched when there are two) and hands the predictions, in `conds` order, to `combine`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Guidance:
    """The conditionings of a step (`conds`, each a CONDITIONING dict), which of them are
    negatives (SDXL's negative size conditioning), how their predictions combine, and which of
    them is "the" conditional prediction (post-CFG patches compare against it)."""

    conds: tuple[dict[str, Any], ...]
    combine: Callable[[Sequence[Any]], Any]
    negatives: tuple[bool, ...] = ()
    cond_index: int = -1
    post_cfg: tuple[Callable[..., Any], ...] = field(default=())

    def is_negative(self, index: int) -> bool:
        return bool(self.negatives[index]) if index < len(self.negatives) else False


def cfg(positive: dict[str, Any], negative: dict[str, Any] | None, scale: float) -> Guidance:
    """Classifier-free guidance (`uncond + scale * (cond - uncond)`); the positive alone when
    `scale` is at most 1 or there is no negative, as diffusers' pipelines skip the uncond."""
    if scale <= 1.0 or negative is None:
        return Guidance((positive,), lambda preds: preds[0])

    def combine(preds: Sequence[Any]) -> Any:
        uncond, cond = preds
        return uncond + scale * (cond - uncond)

    return Guidance((negative, positive), combine, (True, False))


def dual_cfg(
    cond1: dict[str, Any],
    cond2: dict[str, Any],
    negative: dict[str, Any],
    cfg_conds: float,
    cfg_cond2_negative: float,
    style: str = "regular",
) -> Guidance:
    """ComfyUI's DualCFGGuider: "regular" is `neg + s2 (c2 - neg) + s1 (c1 - c2)`, "nested"
    `neg + s2 ((c2 + s1 (c1 - c2)) - neg)` (s1 = cfg_conds, s2 = cfg_cond2_negative)."""
    s1, s2 = cfg_conds, cfg_cond2_negative
    if style not in ("regular", "nested"):
        raise ValueError(f"style {style!r} is not 'regular' or 'nested'")

    def combine(preds: Sequence[Any]) -> Any:
        neg, c2, c1 = preds
        if style == "nested":
            return neg + s2 * ((c2 + s1 * (c1 - c2)) - neg)
        return neg + s2 * (c2 - neg) + s1 * (c1 - c2)

    return Guidance((negative, cond2, cond1), combine, (True, False, False))


def to_denoised(prediction: str, x: Any, model_output: Any, sigma: float) -> Any:
    """The denoised estimate x0 from a network output at noise level `sigma` (k-diffusion's
    sample space for eps and v, the interpolation x = (1 - s) x0 + s noise for flow)."""
    if prediction == "flow":
        return x - sigma * model_output
    if prediction == "epsilon":
        return x - sigma * model_output
    if prediction == "v_prediction":
        return x / (sigma**2 + 1) - model_output * sigma / (sigma**2 + 1) ** 0.5
    if prediction == "sample":  # x0 prediction (Lotus): the output is the estimate
        return model_output
    raise ValueError(f"no denoised estimate for prediction type {prediction!r}")


def from_denoised(prediction: str, x: Any, denoised: Any, sigma: float) -> Any:
    """The network output that gives `denoised` at `sigma` (the inverse of `to_denoised`)."""
    if prediction in ("flow", "epsilon"):
        return (x - denoised) / sigma
    if prediction == "v_prediction":
        return (x / (sigma**2 + 1) - denoised) * (sigma**2 + 1) ** 0.5 / sigma
    if prediction == "sample":
        return denoised
    raise ValueError(f"no denoised estimate for prediction type {prediction!r}")


def cfg_norm(strength: float) -> Callable[..., Any]:
    """ComfyUI's CFGNorm as a post-CFG patch: the guided denoised estimate is scaled down,
    per pixel, to at most the norm (over channels) of the conditional one, times `strength`."""

    def patch(denoised: Any, cond_denoised: Any) -> Any:
        import torch

        cond_norm = torch.norm(cond_denoised, dim=1, keepdim=True)
        guided_norm = torch.norm(denoised, dim=1, keepdim=True)
        scale = (cond_norm / (guided_norm + 1e-8)).clamp(min=0.0, max=1.0)
        return denoised * scale * strength

    return patch
