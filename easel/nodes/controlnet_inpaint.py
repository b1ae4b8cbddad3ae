"""ControlNetInpaintingAliMamaApply (ComfyUI's comfy_extras/nodes_controlnet.py): a ControlNet
that repaints a masked area, applied to both sides of the guidance. For an inpainting
ControlNet (one taking the mask as a channel: InstantX's Qwen-Image inpainting ControlNet) the
masked pixels of the image are blacked out and the kept area's mask goes with the hint; for
another ControlNet the node is ControlNetApplyAdvanced with a VAE, as in ComfyUI.

Easel applies InstantX's Qwen-Image ControlNets with it (easel.models.qwen_instantx_controlnet);
AliMama's SD3 / Flux inpainting ControlNets are not supported."""

from __future__ import annotations

from typing import Any

from easel.core.node import Input, NodeError, node
from easel.core.types import Conditioning, ControlNet, Image, Mask, Vae
from easel.nodes.controlnet import _apply, _check_image


def _keep_mask(mask: Any, image: Any) -> Any:
    """1 - mask as [B, 1, h, w] (at the mask's size), and its rounded bilinear resize to the
    image's size (ComfyUI's mask_apply)."""
    import torch.nn.functional as F

    if getattr(mask, "ndim", 0) not in (2, 3, 4):
        raise NodeError(
            f"expects a MASK [B, H, W], got {tuple(getattr(mask, 'shape', ()))}", "mask"
        )
    keep = 1.0 - mask.float().reshape(-1, 1, mask.shape[-2], mask.shape[-1])
    size = (int(image.shape[2]), int(image.shape[3]))
    apply = keep if tuple(keep.shape[2:]) == size else F.interpolate(keep, size, mode="bilinear")
    return keep, apply.round()


@node(category="conditioning", outputs={"positive": Conditioning, "negative": Conditioning})
def ControlNetInpaintingAliMamaApply(
    positive: Conditioning,
    negative: Conditioning,
    control_net: ControlNet,
    vae: Vae,
    image: Image,
    mask: Mask,
    strength: float = Input(1.0, ge=0.0, le=10.0, step=0.01),
    start_percent: float = Input(0.0, ge=0.0, le=1.0, step=0.001),
    end_percent: float = Input(1.0, ge=0.0, le=1.0, step=0.001),
) -> Any:
    """Repaint the masked area (`mask` 1) of `image` with an inpainting ControlNet, on both
    sides, from `start_percent` to `end_percent` (Qwen-Image ControlNets: the whole schedule).
    The image is encoded by `vae` at the sampled latent's size. Strength 0 passes both
    through."""
    from easel.models.qwen_instantx_controlnet import QwenControl, is_qwen_net, takes_mask

    if start_percent > end_percent:
        raise NodeError(
            f"start_percent {start_percent} is after end_percent {end_percent}", "start_percent"
        )
    if not is_qwen_net(control_net):
        raise NodeError(
            "Easel applies InstantX's Qwen-Image ControlNets with this node; AliMama's SD3 / "
            "Flux inpainting ControlNets are not supported (for a Stable Diffusion ControlNet "
            "use ControlNetApplyAdvanced)",
            "control_net",
        )
    if strength == 0:
        return {"positive": positive, "negative": negative}
    _check_image(image)
    keep = None
    if takes_mask(control_net):
        keep, apply = _keep_mask(mask, image)
        if apply.shape[0] not in (1, image.shape[0]) and image.shape[0] != 1:
            raise NodeError(f"{apply.shape[0]} masks for {image.shape[0]} images", "mask")
        image = image[:, :3] * apply
    control = QwenControl(
        control_net, image, vae, keep, float(strength), float(start_percent), float(end_percent)
    )
    made: dict[int, list[Any]] = {}
    return {
        "positive": _apply(positive, control, made),
        "negative": _apply(negative, control, made),
    }


NODES = [ControlNetInpaintingAliMamaApply]
