"""Skip Layer Guidance (ComfyUI's SkipLayerGuidanceDiT, SkipLayerGuidanceDiTSimple and
SkipLayerGuidanceSD3): guide away from what the transformer predicts with some of its blocks
left out, as Stability recommends for SD3.5 (layers 7, 8, 9). The patch itself is
easel.models.skip_layer_guidance; these nodes check the model can skip blocks and turn the
percent window into noise levels, as ComfyUI does when the node runs."""

from __future__ import annotations

from typing import Any

from easel.core.node import Input, NodeError, node
from easel.core.types import Model


def _patched(
    node_name: str,
    model: Any,
    double_layers: str,
    single_layers: str,
    start_percent: float,
    end_percent: float,
    **options: Any,
) -> Any:
    """`model` with a skip-layer patch, or unchanged when no layer is listed (as ComfyUI)."""
    from easel.models import skip_layer_guidance as slg

    double, single = slg.parse_layers(double_layers), slg.parse_layers(single_layers)
    if not double and not single:
        return {"model": model}
    family = model.family
    kind = getattr(family, "network", None)
    label = getattr(family, "label", None) or "this model"
    if kind not in slg.BLOCKS or getattr(family, "prediction_type", None) != "flow":
        raise NodeError(
            f"{node_name}: {model.name} is {label}, whose transformer Easel cannot skip "
            "layers of (it can for SD3 / SD3.5, Flux.1 and Chroma)",
            "model",
        )
    double_blocks, single_blocks = slg.blocks_of(model.unet, kind)
    # A kind of block the model does not have is ignored, as ComfyUI ignores it (SD3 has
    # joint blocks only; SkipLayerGuidanceDiT's single_layers default names three).
    for name, blocks, indices in (
        ("double_layers", double_blocks, double),
        ("single_layers", single_blocks, single),
    ):
        if blocks is not None and any(i >= len(blocks) for i in indices):
            raise NodeError(
                f"{node_name}: {model.name} has {len(blocks)} "
                f"{'double (joint)' if name == 'double_layers' else 'single'} blocks "
                f"(0..{len(blocks) - 1}); {name} lists {max(indices)}",
                name,
            )
    if end_percent < start_percent:
        raise NodeError(
            f"{node_name}: end_percent {end_percent} is before start_percent {start_percent}",
            "end_percent",
        )
    config = {**model.scheduler_config, **model.sampling}
    patch = slg.SkipLayerGuidance(
        double,
        single,
        sigma_start=slg.percent_to_sigma(config, start_percent),
        sigma_end=slg.percent_to_sigma(config, end_percent),
        **options,
    )
    return {"model": model.with_post_cfg(patch)}


@node(category="advanced/guidance", outputs={"model": Model})
def SkipLayerGuidanceDiT(
    model: Model,
    double_layers: str = Input("7, 8, 9"),
    single_layers: str = Input("7, 8, 9"),
    scale: float = Input(3.0, ge=0.0, le=10.0, step=0.1),
    start_percent: float = Input(0.01, ge=0.0, le=1.0, step=0.001),
    end_percent: float = Input(0.15, ge=0.0, le=1.0, step=0.001),
    rescaling_scale: float = Input(0.0, ge=0.0, le=10.0, step=0.01),
) -> Any:
    """From `start_percent` to `end_percent` of the schedule, one more pass of the positive
    with the listed double (SD3's joint) and single blocks skipped; the guided denoised
    estimate moves by `scale * (cond - skipped)`, then towards the conditional estimate's
    spread by `rescaling_scale`. Layers of a kind the model has not are ignored."""
    return _patched(
        "SkipLayerGuidanceDiT",
        model,
        double_layers,
        single_layers,
        start_percent,
        end_percent,
        scale=scale,
        rescaling=rescaling_scale,
    )


@node(category="advanced/guidance", outputs={"model": Model})
def SkipLayerGuidanceDiTSimple(
    model: Model,
    double_layers: str = Input("7, 8, 9"),
    single_layers: str = Input("7, 8, 9"),
    start_percent: float = Input(0.0, ge=0.0, le=1.0, step=0.001),
    end_percent: float = Input(1.0, ge=0.0, le=1.0, step=0.001),
) -> Any:
    """From `start_percent` to `end_percent` of the schedule, the negative's pass runs with
    the listed blocks skipped (no extra pass; nothing changes without a negative)."""
    return _patched(
        "SkipLayerGuidanceDiTSimple",
        model,
        double_layers,
        single_layers,
        start_percent,
        end_percent,
        uncond=True,
    )


@node(category="advanced/guidance", outputs={"model": Model})
def SkipLayerGuidanceSD3(
    model: Model,
    layers: str = Input("7, 8, 9"),
    scale: float = Input(3.0, ge=0.0, le=10.0, step=0.1),
    start_percent: float = Input(0.01, ge=0.0, le=1.0, step=0.001),
    end_percent: float = Input(0.15, ge=0.0, le=1.0, step=0.001),
) -> Any:
    """SkipLayerGuidanceDiT with `layers` as the double (SD3's joint) blocks, no single
    blocks and no rescaling (diffusers' `skip_guidance_layers`)."""
    return _patched(
        "SkipLayerGuidanceSD3",
        model,
        layers,
        "",
        start_percent,
        end_percent,
        scale=scale,
    )


NODES = [SkipLayerGuidanceDiT, SkipLayerGuidanceDiTSimple, SkipLayerGuidanceSD3]
