"""ControlNet nodes, as ComfyUI defines them: ControlNetLoader, ControlNetApply (the positive
side, which ComfyUI also gives to an uncond without a chain of its own) and
ControlNetApplyAdvanced (both sides, a percent range of the schedule).

A conditioning's ControlNets are its "control" list of easel.models.controlnet.Control entries:
applying one more returns new dicts and a new, longer list (the inputs are never changed), and
the two sides get the very same list when they had the same one, so the sampler can run them
as one batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Conditioning, ControlNet, Image, Vae
from easel.nodes.model_access import discovered, manager, model_errors


def _resolve(ctx: Context, name: str) -> Path:
    models = ctx.services.get("models")
    if models is not None:
        return Path(models.resolve("controlnet", name))
    from easel.models import discovery

    return discovery.resolve("controlnet", name)


def _fingerprint(ctx: Context, inputs: dict[str, Any]) -> str:
    """The file's (or folder's files') size and time, so a replaced ControlNet reloads."""
    from easel.models.errors import ModelError

    try:
        path = _resolve(ctx, str(inputs.get("name", "")))
    except ModelError:
        return "missing"
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return ";".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)


@node(category="loaders", outputs={"control_net": ControlNet}, fingerprint=_fingerprint)
def ControlNetLoader(ctx: Context, name: str = Input(choices=discovered("controlnet"))) -> Any:
    """Load a ControlNet from the models folder's controlnet/: a diffusers folder, or one
    .safetensors file in the original or diffusers layout (SD 1.x, 2.x, XL), with nothing
    beside it."""
    from easel.models.controlnet import controlnet_handle

    models = manager(ctx)
    with model_errors("name"):
        return controlnet_handle(models, name, _resolve(ctx, name))


def _check_image(image: Any) -> None:
    if getattr(image, "ndim", 0) != 4:
        raise NodeError(
            f"the hint must be an IMAGE [B, C, H, W], got {tuple(getattr(image, 'shape', ()))}",
            "image",
        )


def _with_control(cond: dict[str, Any], control: Any, made: dict[int, list[Any]]) -> dict[str, Any]:
    """A copy of `cond` whose chain ends with `control`; conditionings that had the same chain
    get the same new list (`made`, keyed by the old list)."""
    previous = cond.get("control") or []
    key = id(previous) if previous else 0
    if key not in made:
        made[key] = [*previous, control]
    return {**cond, "control": made[key]}


def _apply(cond: dict[str, Any], control: Any, made: dict[int, list[Any]]) -> dict[str, Any]:
    """`control` on `cond` and on its "uncond" (the sampler's default negative)."""
    out = _with_control(cond, control, made)
    if isinstance(cond.get("uncond"), dict):
        out["uncond"] = _with_control(cond["uncond"], control, made)
    return out


@node(category="conditioning", outputs={"conditioning": Conditioning})
def ControlNetApply(
    ctx: Context,
    conditioning: Conditioning,
    control_net: ControlNet,
    image: Image,
    strength: float = Input(1.0, ge=0.0, le=10.0, step=0.01),
) -> Any:
    """Guide sampling with a ControlNet and a hint image, over the whole schedule. Applied to
    this (positive) conditioning; as in ComfyUI, a negative without ControlNets of its own
    runs with the same chain. Strength 0 passes the conditioning through."""
    from easel.models.controlnet import Control

    if strength == 0:
        return conditioning
    _check_image(image)
    from easel.models.qwen_instantx_controlnet import is_qwen_net

    if is_qwen_net(control_net):
        raise NodeError(
            "a Qwen-Image ControlNet encodes its image with the VAE: use "
            "ControlNetApplyAdvanced (with the VAE) or ControlNetInpaintingAliMamaApply",
            "control_net",
        )
    control = Control(control_net, image, float(strength))
    out = _apply(conditioning, control, {})
    out["control_apply_to_uncond"] = True
    return out


@node(category="conditioning", outputs={"positive": Conditioning, "negative": Conditioning})
def ControlNetApplyAdvanced(
    ctx: Context,
    positive: Conditioning,
    negative: Conditioning | None = None,
    *,
    control_net: ControlNet,
    image: Image,
    strength: float = Input(1.0, ge=0.0, le=10.0, step=0.01),
    start_percent: float = Input(0.0, ge=0.0, le=1.0, step=0.001),
    end_percent: float = Input(1.0, ge=0.0, le=1.0, step=0.001),
    vae: Vae | None = None,
) -> Any:
    """Guide both sides of the guidance with a ControlNet and a hint image, from
    `start_percent` to `end_percent` of the noise schedule (as ComfyUI measures it: on the
    model's timesteps, not in steps). Without a negative, the positive's default negative (the
    empty prompt) gets the ControlNet. `vae` is for ControlNets that take a latent hint; the
    Stable Diffusion ones take the image and ignore it. Strength 0 passes both through."""
    from easel.models.controlnet import Control

    if start_percent > end_percent:
        raise NodeError(
            f"start_percent {start_percent} is after end_percent {end_percent}", "start_percent"
        )
    if strength == 0:
        return {"positive": positive, "negative": negative}
    _check_image(image)
    from easel.models.qwen_instantx_controlnet import QwenControl, is_qwen_net

    if is_qwen_net(control_net):  # InstantX's Qwen-Image ControlNets take a latent hint
        if vae is None:
            raise NodeError("a Qwen-Image ControlNet encodes its image: link the VAE", "vae")
        control: Any = QwenControl(
            control_net, image, vae, None, float(strength), float(start_percent), float(end_percent)
        )
    else:
        control = Control(
            control_net, image, float(strength), float(start_percent), float(end_percent)
        )
    made: dict[int, list[Any]] = {}
    out_positive = _apply(positive, control, made)
    if negative is not None:
        out_negative = _apply(negative, control, made)
    elif isinstance(out_positive.get("uncond"), dict):
        out_negative = out_positive["uncond"]
    else:
        raise NodeError("this conditioning has no default negative: link a negative", "negative")
    return {"positive": out_positive, "negative": out_negative}


NODES = [ControlNetLoader, ControlNetApply, ControlNetApplyAdvanced]
