"""LoRA nodes: LoraLoader (model and text encoders) and LoraLoaderModelOnly.

A LoRA never changes the shared model: the outputs are handles on the same modules with the
LoRA added to their `patches`, applied at call time (easel.models.lora.bind).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Clip, Model
from easel.nodes.model_access import discovered, manager, model_errors

KIND = "loras"


def lora_path(ctx: Context, name: str) -> Path:
    """The file of LoRA `name` under a `loras/` folder (a ModelError saying where Easel looked
    when there is none)."""
    return Path(manager(ctx).resolve(KIND, name))


def _fingerprint(ctx: Context, inputs: dict[str, Any]) -> str:
    """The LoRA file's path, size and time, so a replaced file is read again."""
    from easel.models.errors import ModelError

    try:
        path = lora_path(ctx, str(inputs.get("name", "")))
        stat = path.stat()
    except (ModelError, NodeError, OSError):
        return "missing"
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def _load(ctx: Context, name: str, family: Any = None) -> Any:
    """The LoRA file `name`, converted for `family` when it is a transformer (flow) family
    (easel.models.lora_flow, cached per file and family), else read in the SD key formats."""
    from easel.models.lora import LoraWeights, load_lora
    from easel.models.lora_flow import is_flow_family, load_flow_lora

    unsafe = manager(ctx).allow_unsafe_pickle
    weights: LoraWeights
    with model_errors("name"):
        if is_flow_family(family):
            weights = load_flow_lora(
                lora_path(ctx, name), family, name=name, allow_unsafe_pickle=unsafe
            )
        else:
            weights = load_lora(lora_path(ctx, name), name=name, allow_unsafe_pickle=unsafe)
    for message in weights.warnings():
        ctx.warn(message)
    return weights


def _check_applies(
    ctx: Context, weights: Any, targets: list[tuple[str, str, Any]], family: Any = None
) -> None:
    """Warn about LoRA layers the linked models lack; a NodeError when none applies at all."""
    from easel.models.lora import component_of

    applied = 0
    seen: set[str] = set()
    for input_name, bound_as, module in targets:
        component = component_of(bound_as)
        seen.add(component)
        resolved = weights.resolve(component, module)
        applied += len(resolved.layers)
        for problem in resolved.problems():
            ctx.warn(
                f"LoRA {weights.name!r} on {input_name} ({component}): {problem}; "
                "those layers are left as they are"
            )
    inputs = sorted({input_name for input_name, _, _ in targets})
    others = [
        c
        for c in weights.components()
        if c.startswith("text_encoder") and c not in seen and "clip" in inputs
    ]
    if applied == 0:
        from easel.models.lora_flow import describe

        has = ", ".join(f"{c} ({len(weights.layers[c])} layers)" for c in weights.components())
        looks_like = getattr(weights, "looks_like", "") or describe(
            name for c in weights.components() for name in weights.layers[c]
        )
        label = getattr(family, "label", None) or "of unknown family"
        raise NodeError(
            f"LoRA {weights.name!r} changes no layer of the linked "
            f"{' and '.join(inputs)} ({label}): its layers ({has}) match none of the model's; "
            f"the file looks like {looks_like}. Is it made for another model family?",
            "name",
        )
    if others:
        ctx.warn(
            f"LoRA {weights.name!r} has layers for {', '.join(others)}, which the linked "
            "models do not have; those are not applied"
        )


def _unet(model: Any) -> Any:
    """The linked model's UNet, or a NodeError when the linked MODEL takes no LoRA."""
    if not hasattr(model, "with_patches") or getattr(model, "unet", None) is None:
        raise NodeError(f"the linked model ({type(model).__name__}) takes no LoRA", "model")
    return model.unet


def _text_targets(clip: Any, family: Any = None) -> list[tuple[str, str, Any]]:
    """The text parts a LoRA is checked against: all of them, or for a flow family's LoRA the
    CLIP towers its text-encoder layers are for (never T5 or an LLM)."""
    from easel.models.lora_flow import TEXT_PART_KEYS, is_flow_family

    flow = is_flow_family(family)
    return [
        ("clip", f"text_encoder:{part.key}", part.model)
        for part in clip.parts
        if not flow or part.key in TEXT_PART_KEYS.values()
    ]


# A strength change re-runs only its own side: a TextEncode fed by `clip` keeps its cached
# result when only strength_model changes, and the sampler when only strength_clip does.
@node(
    category="loaders",
    outputs={"model": Model, "clip": Clip},
    fingerprint=_fingerprint,
    output_depends={
        "model": ("model", "name", "strength_model"),
        "clip": ("clip", "name", "strength_clip"),
    },
)
def LoraLoader(
    ctx: Context,
    model: Model,
    clip: Clip,
    name: str = Input(choices=discovered(KIND)),
    strength_model: float = Input(1.0, ge=-100.0, le=100.0, step=0.01),
    strength_clip: float = Input(1.0, ge=-100.0, le=100.0, step=0.01),
) -> dict[str, Any]:
    """Add a LoRA (kohya, diffusers/PEFT or ComfyUI key format) to a model and its text
    encoders at the given strengths; negative strengths subtract it. The shared base weights
    are never changed: other workflows using the same checkpoint see the model as it was.
    Several LoraLoaders in a row stack."""
    if strength_model == 0.0 and strength_clip == 0.0:
        return {"model": model, "clip": clip}
    family = getattr(model, "family", None) or getattr(clip, "family", None)
    weights = _load(ctx, name, family)
    targets = []
    if strength_model != 0.0:
        targets.append(("model", "unet", _unet(model)))
    if strength_clip != 0.0:
        if clip is None or not hasattr(clip, "with_patches") or not getattr(clip, "parts", ()):
            raise NodeError("the linked CLIP has no text encoder to apply the LoRA to", "clip")
        targets += _text_targets(clip, family)
    _check_applies(ctx, weights, targets, family)
    return {
        "model": model.with_patches(((weights, strength_model),)) if strength_model else model,
        "clip": clip.with_patches(((weights, strength_clip),)) if strength_clip else clip,
    }


@node(category="loaders", outputs={"model": Model}, fingerprint=_fingerprint)
def LoraLoaderModelOnly(
    ctx: Context,
    model: Model,
    name: str = Input(choices=discovered(KIND)),
    strength_model: float = Input(1.0, ge=-100.0, le=100.0, step=0.01),
) -> Any:
    """Add a LoRA to the denoising model only (its text-encoder layers, if any, are ignored)."""
    if strength_model == 0.0:
        return model
    family = getattr(model, "family", None)
    weights = _load(ctx, name, family)
    _check_applies(ctx, weights, [("model", "unet", _unet(model))], family)
    return model.with_patches(((weights, strength_model),))


NODES = [LoraLoader, LoraLoaderModelOnly]
