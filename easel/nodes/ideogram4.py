"""Ideogram 4 nodes (ComfyUI's names): Ideogram4Scheduler (the logit-normal noise levels),
DualModelGuider (asymmetric guidance: the positive through one model, the negative through a
second, unconditional one) and CFGOverride (another cfg for part of the schedule). The text
encoder loads with TextEncoderLoader type ideogram4, the latent is EmptyFlux2LatentImage's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from easel.core.node import Input, NodeError, node
from easel.core.types import Conditioning, Guider, Model, socket_type
from easel.nodes.custom_sampling import GuiderValue

Sigmas = socket_type("SIGMAS")


def _is_ideogram4(model: Any) -> bool:
    return getattr(model.family, "network", None) == "ideogram4"


@node(category="sampling/custom_sampling/schedulers", outputs={"sigmas": Sigmas})
def Ideogram4Scheduler(
    steps: int = Input(20, ge=1, le=200),
    width: int = Input(1024, ge=256, le=8192, step=16),
    height: int = Input(1024, ge=256, le=8192, step=16),
    mu: float = Input(0.0, ge=-10.0, le=10.0, step=0.05),
    std: float = Input(1.75, ge=0.1, le=5.0, step=0.05),
) -> Any:
    """Ideogram 4's noise levels (ComfyUI's Ideogram4Scheduler, Ideogram4Pipeline's schedule):
    a logit-normal schedule whose mean is `mu` plus half the log of the image's pixels over
    512x512 and whose spread is `std`; steps + 1 levels from about 1 down to 0."""
    import torch

    from easel.models.families.ideogram4 import sigmas

    return {"sigmas": torch.tensor(sigmas(steps, width, height, mu, std), dtype=torch.float32)}


def scale_at(sigma: float, cfg: float, overrides: Sequence[tuple[float, float, float]]) -> float:
    """The cfg of a step at noise level `sigma`: CFGOverride's cfg where the step lies between
    its start and end percent of the schedule (a flow model's percent p is sigma 1 - p, as
    ComfyUI's percent_to_sigma for an unshifted flow model), the guider's elsewhere; the last
    override covering the step wins."""
    scale = cfg
    for value, start, end in overrides:
        if 1.0 - end <= sigma <= 1.0 - start:
            scale = value
    return scale


@dataclass(frozen=True, eq=False)
class DualModelGuiderValue(GuiderValue):
    """GUIDER: the positive through `model`, the negative through `negative_model` on the
    image tokens alone, blended as `neg + scale * (pos - neg)` with CFGOverride's schedule."""

    negative_model: Any = None

    def guidance(self) -> Any:
        from easel.models import guidance
        from easel.models.ideogram4_denoiser import ROUTE, Route, StepClock

        positive, negative = self.conds
        clock = StepClock()
        model, other = self.model, self.negative_model
        other_module = other.manager.place(other.unet)
        route_pos = Route(model.forward(), model.unet, False, clock)
        route_neg = Route(other.forward(), other_module, True, clock)
        cfg = self.scales[0]
        overrides = tuple(getattr(model.family, "cfg_overrides", ()))

        def combine(preds: Sequence[Any]) -> Any:
            uncond, cond = preds
            return uncond + scale_at(clock.sigma, cfg, overrides) * (cond - uncond)

        conds = ({**negative, ROUTE: route_neg}, {**positive, ROUTE: route_pos})
        return guidance.Guidance(conds, combine, (True, False))


@node(category="sampling/custom_sampling/guiders", outputs={"guider": Guider})
def DualModelGuider(
    model: Model,
    positive: Conditioning,
    model_negative: Model,
    negative: Conditioning,
    cfg: float = Input(7.0, ge=0.0, le=100.0, step=0.1),
) -> Any:
    """Ideogram 4's asymmetric guidance (ComfyUI's DualModelGuider, Ideogram4Pipeline's
    `transformer` and `unconditional_transformer`): `model` predicts with the positive text,
    `model_negative` predicts on the image alone (its conditioning carries no text; a zeroed
    one from ConditioningZeroOut is what ComfyUI's template gives), and the two velocities
    blend as neg + cfg * (pos - neg). CFGOverride on `model` changes cfg for part of the
    schedule."""
    for name, value in (("model", model), ("model_negative", model_negative)):
        if not _is_ideogram4(value):
            label = getattr(value.family, "label", "this model")
            raise NodeError(
                f"DualModelGuider guides Ideogram 4's two models; {value.name} is {label}", name
            )
    if getattr(model.unet, "easel_text_free", False):
        raise NodeError(
            f"{model.name} reads no text (an unconditional Ideogram 4 model): connect the "
            "conditional model to `model` and this one to `model_negative`",
            "model",
        )
    return DualModelGuiderValue(
        model, (positive, negative), "dual_model", (cfg,), negative_model=model_negative
    )


@node(category="advanced/guidance", outputs={"model": Model})
def CFGOverride(
    model: Model,
    cfg: float = Input(3.0, ge=0.0, le=100.0, step=0.1),
    start_percent: float = Input(0.7, ge=0.0, le=1.0, step=0.001),
    end_percent: float = Input(1.0, ge=0.0, le=1.0, step=0.001),
) -> Any:
    """Use `cfg` instead of the guider's from `start_percent` to `end_percent` of the
    schedule (ComfyUI's CFGOverride; Ideogram 4's template lowers cfg to 3 for the last 30%,
    the "polish" steps of Ideogram4Pipeline's guidance schedule). On an Ideogram 4 model,
    applied by DualModelGuider."""
    if not _is_ideogram4(model):
        label = getattr(model.family, "label", "this model")
        raise NodeError(
            f"CFGOverride is applied by DualModelGuider to Ideogram 4 models; {model.name} is "
            f"{label}",
            "model",
        )
    if start_percent > end_percent:
        raise NodeError(
            f"start_percent {start_percent} is after end_percent {end_percent}", "start_percent"
        )
    family = model.family
    overrides = (*family.cfg_overrides, (cfg, start_percent, end_percent))
    return {"model": replace(model, family=replace(family, cfg_overrides=overrides))}


NODES = [Ideogram4Scheduler, DualModelGuider, CFGOverride]
