"""Lotus depth: LotusConditioning, the fixed conditioning a Lotus UNet (loaded by
DiffusionModelLoader, ComfyUI's UNETLoader) is sampled with. ComfyUI's template samples it in
one step: VAEEncode the image, BasicGuider(model, LotusConditioning), DisableNoise, euler,
BasicScheduler(1 step) with SetFirstSigma(999), VAEDecode, InvertImage."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import NodeError, node
from easel.core.types import Clip, Conditioning
from easel.nodes.model_access import manager, model_errors


def _fingerprint(ctx: Context, inputs: dict[str, Any]) -> str:
    """Which SD 2 checkpoint the conditioning comes from (when no CLIP is linked), by path,
    size and time: a replaced or added checkpoint recomputes it."""
    if inputs.get("clip") is not None:
        return "clip"
    models = ctx.services.get("models")
    if models is None:
        return "no-models"
    from easel.models.lotus_conditioning import sd2_checkpoint

    try:
        name = sd2_checkpoint(models)
        if name is None:
            return "none"
        stat = models.resolve("checkpoints", name).stat()
    except Exception:
        return "unreadable"
    return f"{name}:{stat.st_size}:{stat.st_mtime_ns}"


@node(
    category="conditioning/lotus",
    outputs={"conditioning": Conditioning},
    fingerprint=_fingerprint,
)
def LotusConditioning(ctx: Context, clip: Clip | None = None) -> Any:
    """The conditioning Lotus was trained with: Stable Diffusion 2's text encoder's reading of
    the empty prompt (its start and end tokens). Computed from `clip` when linked, else from
    the text encoder of the first Stable Diffusion 2.x checkpoint in `checkpoints/` (ComfyUI's
    node has the numbers built in; Easel ships no model data)."""
    from easel.models.lotus_conditioning import (
        NO_ENCODER,
        lotus_conditioning,
        sd2_checkpoint,
        sd2_clip,
    )

    with model_errors("clip"):
        if clip is None:
            models = manager(ctx)
            name = sd2_checkpoint(models)
            if name is None:
                raise NodeError(NO_ENCODER, "clip")
            clip = sd2_clip(name, models)
        try:
            return lotus_conditioning(clip)
        except ValueError as exc:
            raise NodeError(str(exc), "clip") from exc


NODES = [LotusConditioning]
