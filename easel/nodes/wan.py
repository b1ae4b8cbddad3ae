"""Wan 2.1 nodes, ComfyUI's of those names: WanImageToVideo (the latent of a video and the start
image's conditioning for an image-to-video model; ChronoEdit edits an image as the last frame of
a short video from it) and ScaleROPE (the rotary positions scaled and shifted per axis)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import ClipVisionOutput, Conditioning, Image, Latent, Model, Vae
from easel.nodes.model_access import model_errors

MAX_SIDE = 16384
MAX_LENGTH = 1025
TEMPORAL = 4  # the Wan 2.1 VAE's frames per latent frame (after the first)


def _start_frames(image: Any, width: int, height: int, length: int) -> Any:
    """[length, 3, H, W]: the start images (at most `length`, cropped to the aspect at the
    centre and resized bilinearly without antialiasing, as ComfyUI's common_upscale does for
    WanImageToVideo) then grey (0.5) frames."""
    import torch
    import torch.nn.functional as F

    from easel.nodes.upscale import center_crop

    start = image[:length, :3].float()
    if tuple(start.shape[-2:]) != (height, width):
        cropped = center_crop(start, width, height)
        start = F.interpolate(cropped, size=(height, width), mode="bilinear", align_corners=False)
    frames = torch.full((length, 3, height, width), 0.5, dtype=torch.float32)
    frames[: start.shape[0]] = start.float()
    return frames


@node(
    category="conditioning/video_models",
    outputs={"positive": Conditioning, "negative": Conditioning, "latent": Latent},
)
def WanImageToVideo(
    ctx: Context,
    positive: Conditioning,
    negative: Conditioning,
    vae: Vae,
    width: int = Input(832, ge=16, le=MAX_SIDE, step=16),
    height: int = Input(480, ge=16, le=MAX_SIDE, step=16),
    length: int = Input(81, ge=1, le=MAX_LENGTH, step=4),
    batch_size: int = Input(1, ge=1, le=4096),
    clip_vision_output: ClipVisionOutput | None = None,
    start_image: Image | None = None,
) -> Any:
    """An empty Wan latent of `length` frames ([batch, 16, 1 + (length - 1) // 4, h, w]) and
    the conditioning of a Wan image-to-video model: the start images then grey frames through
    the VAE as one video (the latents the model sees beside its input), a mask marking the
    latent frames the start images fill, and the start image's CLIP vision output. ChronoEdit:
    length 5, the edited image is the last decoded frame."""
    import torch

    from easel.core.budget import budget_of
    from easel.models import wan_video

    if width % 16 or height % 16:
        raise NodeError(
            f"{width}x{height}: Wan's width and height are multiples of 16", "width"
        )
    problem = budget_of(ctx.services).problem(width, height, frames=length, batch=batch_size)
    if problem:
        raise NodeError(problem, "length" if length > 1 else "width")
    frames = 1 + (length - 1) // TEMPORAL
    latent = torch.zeros(batch_size, 16, frames, height // 8, width // 8)
    extra: dict[str, Any] = {}
    if start_image is not None:
        if getattr(start_image, "ndim", 0) != 4 or start_image.shape[1] < 3:
            raise NodeError("expects RGB images [B, 3, H, W]", "start_image")
        if not wan_video.is_wan_vae(vae):
            raise NodeError(
                f"needs the Wan 2.1 VAE (wan_2.1_vae.safetensors); {vae.name} is another VAE",
                "vae",
            )
        video = _start_frames(start_image, width, height, length)
        with model_errors("vae"):
            concat = wan_video.encode_frames(vae, video)
        mask = torch.ones(1, 1, frames, height // 8, width // 8)
        mask[:, :, : 1 + (int(min(start_image.shape[0], length)) - 1) // TEMPORAL] = 0.0
        extra = {"concat_latent_image": concat, "concat_mask": mask}
    if clip_vision_output is not None:
        extra["clip_vision_output"] = clip_vision_output
    return {
        "positive": {**positive, **extra},
        "negative": {**negative, **extra},
        "latent": {"samples": latent, "scaling_factor": 1.0, "shift_factor": 0.0},
    }


@node(category="advanced/model_patches", outputs={"model": Model})
def ScaleROPE(
    model: Model,
    scale_x: float = Input(1.0, ge=0.0, le=100.0, step=0.1),
    shift_x: float = Input(0.0, ge=-256.0, le=256.0, step=0.1),
    scale_y: float = Input(1.0, ge=0.0, le=100.0, step=0.1),
    shift_y: float = Input(0.0, ge=-256.0, le=256.0, step=0.1),
    scale_t: float = Input(1.0, ge=0.0, le=100.0, step=0.1),
    shift_t: float = Input(0.0, ge=-256.0, le=256.0, step=0.1),
) -> Any:
    """Scale and shift the model's rotary positions per axis (x columns, y rows, t frames):
    position i becomes shift + scale * i. ChronoEdit runs with scale_t 7. Replaces an earlier
    ScaleROPE's setting, as ComfyUI does. Wan models."""
    from easel.models.wan_rope import RopeScale

    if getattr(model.family, "network", "") != "wan":
        label = getattr(model.family, "label", "this model")
        raise NodeError(f"ScaleROPE applies to Wan models in Easel; {label} is not one", "model")
    patch = RopeScale((scale_t, scale_y, scale_x), (shift_t, shift_y, shift_x))
    kept = tuple(p for p in model.model_patches if not isinstance(p, RopeScale))
    return {"model": replace(model, model_patches=(*kept, patch))}


NODES = [WanImageToVideo, ScaleROPE]
