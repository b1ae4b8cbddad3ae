"""The Wan 2.1 network adapter of the sampler loop, calling WanTransformer3DModel as diffusers'
WanImageToVideoPipeline and ChronoEditPipeline do (and as ComfyUI's WAN21 model does): the
latent [B, 16, frames, h, w] (a 4-D latent is one frame), for image-to-video models with the
4 mask channels and the start image's 16 latent channels after it (36 in all; ComfyUI's
concat_mask inverted: 1 on the frames the start image fills), the scheduler's timesteps as they
are (sigma * 1000), UMT5's embeddings, and CLIP ViT-H's penultimate hidden states of the start
image. Each guidance side is its own call, as the pipelines make them."""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch

MASK_CHANNELS = 4


class WanNetwork:
    """Calls a WanTransformer3DModel (`call`: the module, or it with patches)."""

    def __init__(self, transformer: Any, call: Any, family: Any) -> None:
        self.transformer, self.call, self.family = transformer, call, family
        self.step, self.total = 0, 0

    def condition(
        self,
        cond: dict[str, Any],
        batch: int,
        device: Any,
        dtype: Any,
        *,
        pixel_size: tuple[int, int],
        negative: bool = False,
    ) -> Cond:
        config = self.transformer.config
        embeds = cond.get("embeds")
        if embeds is None or embeds.dim() != 3:
            raise ValueError(
                "Wan 2.1 needs UMT5 embeddings: encode the prompt with a CLIP of "
                "CLIPLoader type wan"
            )
        if embeds.shape[-1] != int(config.text_dim):
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this Wan model expects "
                f"{config.text_dim} (UMT5-XXL's): was the CLIP made for another model?"
            )
        if cond.get("control"):
            raise ValueError("ControlNet conditioning is not supported for Wan models")
        added: dict[str, Any] = {}
        if config.image_dim is not None:  # image-to-video: CLIP ViT-H of the start image
            vision = cond.get("clip_vision_output")
            hidden = getattr(vision, "penultimate_hidden_states", None)
            if hidden is None:
                raise ValueError(
                    "this Wan image-to-video model needs the start image's CLIP vision output: "
                    "give WanImageToVideo a clip_vision_output (CLIPVisionEncode with "
                    "clip_vision_h)"
                )
            if hidden.shape[-1] != int(config.image_dim):
                raise ValueError(
                    f"the CLIP vision output has width {hidden.shape[-1]} but this Wan model "
                    f"expects {config.image_dim} (CLIP ViT-H's): load clip_vision_h"
                )
            added["image"] = to_batch(hidden, batch, device, dtype)
        extra = int(config.in_channels) - int(config.out_channels)
        if extra:
            added["concat"] = self._concat(cond, extra, batch, device, dtype)
        return Cond(to_batch(embeds, batch, device, dtype), added, None)

    def _concat(self, cond: dict[str, Any], extra: int, batch: int, device: Any, dtype: Any) -> Any:
        """[B, mask + latent channels, frames, h, w] of the start image (None: zeros, filled
        to the latent's size on the first call, as ComfyUI does without a start image)."""
        import torch

        image = cond.get("concat_latent_image")
        if image is None:
            return None
        mask = cond.get("concat_mask")
        if mask is None:
            mask = torch.zeros_like(image[:, :1])
        mask = 1.0 - mask.mean(dim=1, keepdim=True) if mask.shape[1] != MASK_CHANNELS else 1 - mask
        if mask.shape[1] == 1:
            mask = mask.repeat(1, MASK_CHANNELS, 1, 1, 1)
        image = image[:, : extra - MASK_CHANNELS]
        if mask.shape[2] < image.shape[2]:  # ComfyUI pads a short mask with zeros
            pad = image.shape[2] - mask.shape[2]
            mask = torch.nn.functional.pad(mask, (0, 0, 0, 0, 0, pad))
        joined = torch.cat([mask.to(image.dtype), image], dim=1)
        if joined.shape[1] != extra:
            raise ValueError(
                f"the start image gives {joined.shape[1]} extra input channels but this Wan "
                f"model takes {extra}"
            )
        return to_batch(joined, batch, device, dtype)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call, as the pipelines' CFG does

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        import torch

        one_frame = x.dim() == 4
        latent = x.unsqueeze(2) if one_frame else x
        batch, _, frames, height, width = latent.shape
        patch = self.transformer.config.patch_size
        if frames % patch[0] or height % patch[1] or width % patch[2]:
            raise ValueError(
                f"Wan patches latents {patch[1]}x{patch[2]}: the image's width and height must "
                f"be multiples of {8 * patch[1]}"
            )
        added = cond.added or {}
        extra = int(self.transformer.config.in_channels) - int(latent.shape[1])
        if extra:
            concat = added.get("concat")
            if concat is None:
                concat = latent.new_zeros(batch, extra, frames, height, width)
            if tuple(concat.shape[2:]) != (frames, height, width):
                raise ValueError(
                    f"the start image's latent is {tuple(concat.shape[2:])} (frames, h, w) but "
                    f"the latent being made is {(frames, height, width)}: make the latent with "
                    "the same WanImageToVideo node"
                )
            latent = torch.cat([latent, concat.to(latent.dtype)], dim=1)
        out = self.call(
            hidden_states=latent,
            timestep=t.expand(batch).to(x.dtype),
            encoder_hidden_states=cond.encoder_hidden_states,
            encoder_hidden_states_image=added.get("image"),
            return_dict=False,
        )[0]
        return out[:, :, 0] if one_frame else out
