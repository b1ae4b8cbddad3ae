"""The LongCat-Image network adapter of the sampler loop, calling
LongCatImageTransformer2DModel as LongCatImagePipeline does: latents [B, 16, h, w] packed into
2x2 patches (easel.models.flux_denoiser's helpers), timesteps as sigmas (t / 1000), Qwen2.5-VL's
embeddings; position ids (0, i, i) for the text's tokens and (1, T + row, T + column) for the
image's, T the text's length; reference latents (LongCat-Image-Edit's input image) packed after
the image's tokens with ids (2, T + row, T + column), the prediction for the image's tokens
alone kept. No pooled embedding and no guidance input: FluxGuidance's value
(the templates set it) has no place in this model and is not read. Each guidance side is its
own call, as the pipeline makes them."""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch
from easel.models.flux_denoiser import pack, unpack

TEXT_MODALITY, IMAGE_MODALITY = 0, 1
# LongCatImageEditPipeline's input image: its latent packed after the image's, with ids
# (2, T + row, T + column); further reference latents (ComfyUI's "index" method) count on.
REFERENCE_MODALITY = 2
REFERENCE_METHODS = (None, "index")


def text_ids(count: int, device: Any, dtype: Any) -> Any:
    """(0, i, i) for the text's tokens (LongCatImagePipeline's prepare_pos_ids, "text")."""
    import torch

    ids = torch.zeros(count, 3)
    ids[:, 0] = TEXT_MODALITY
    ids[:, 1] = torch.arange(count)
    ids[:, 2] = torch.arange(count)
    return ids.to(device=device, dtype=dtype)


def image_ids(height: int, width: int, start: int, device: Any, dtype: Any) -> Any:
    """(1, start + row, start + column) for the packed image tokens ("image")."""
    import torch

    ids = torch.zeros(height, width, 3)
    ids[..., 0] = IMAGE_MODALITY
    ids[..., 1] = torch.arange(height)[:, None] + start
    ids[..., 2] = torch.arange(width)[None, :] + start
    return ids.reshape(height * width, 3).to(device=device, dtype=dtype)


class LongCatNetwork:
    """Calls a LongCatImageTransformer2DModel (`call`: the module, or it with LoRA patches)."""

    encoder = "Qwen2.5-VL"
    clip_type = "longcat_image"
    references = True  # LongCat-Image-Edit's input image

    def __init__(self, transformer: Any, call: Any, family: Any) -> None:
        self.transformer, self.call, self.family = transformer, call, family
        self.patch = int(getattr(family, "patch", 2))
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
        embeds = cond.get("embeds")
        if embeds is None or embeds.dim() != 3:
            raise ValueError(
                f"{self.family.label} needs {self.encoder} embeddings: encode the prompt with "
                f"a CLIP of TextEncoderLoader type {self.clip_type}"
            )
        width = int(self.transformer.config.joint_attention_dim)
        if embeds.shape[-1] != width:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this {self.family.label} "
                f"model expects {width} ({self.encoder}'s): was the CLIP made for another model?"
            )
        if cond.get("control"):
            raise ValueError(
                f"ControlNet conditioning is not supported for {self.family.label} models"
            )
        method = cond.get("reference_latents_method")
        if method not in REFERENCE_METHODS:
            raise ValueError(
                f"reference latent method {method!r}: {self.family.label} places reference "
                "latents by index"
            )
        added: dict[str, Any] = {}
        if cond.get("reference_latents"):
            if not self.references:
                raise ValueError(
                    f"reference latents (image editing) are not supported for "
                    f"{self.family.label} models"
                )
            added["reference"] = [
                to_batch(latent[:, :, 0] if latent.dim() == 5 else latent, batch, device, dtype)
                for latent in cond["reference_latents"]
            ]
        return Cond(to_batch(embeds, batch, device, dtype), added, None)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call, as LongCatImagePipeline's CFG does

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        batch, _, height, width = x.shape
        if height % self.patch or width % self.patch:
            raise ValueError(
                f"{self.family.label} packs latents in {self.patch}x{self.patch} patches: the "
                f"image's width and height must be multiples of {8 * self.patch}"
            )
        import torch

        hidden = cond.encoder_hidden_states
        count = int(hidden.shape[1])
        txt_ids, img_ids = self.position_ids(
            count, height // self.patch, width // self.patch, x.device, x.dtype
        )
        tokens = pack(x, self.patch)
        size = tokens.shape[1]
        for index, latent in enumerate((cond.added or {}).get("reference", [])):
            h, w = int(latent.shape[-2]), int(latent.shape[-1])
            if h % self.patch or w % self.patch:
                raise ValueError(
                    f"a reference latent of {h}x{w} does not pack in {self.patch}x{self.patch} "
                    f"patches: its image's sides must be multiples of {8 * self.patch}"
                )
            tokens = torch.cat([tokens, pack(latent.to(x.dtype), self.patch)], dim=1)
            ids = image_ids(h // self.patch, w // self.patch, count, x.device, x.dtype)
            ids[:, 0] = REFERENCE_MODALITY + index
            img_ids = torch.cat([img_ids, ids], dim=0)
        out = self.call(
            hidden_states=tokens,
            timestep=t.expand(batch).to(x.dtype) / 1000,
            encoder_hidden_states=hidden,
            txt_ids=txt_ids,
            img_ids=img_ids,
            return_dict=False,
        )[0]
        return unpack(out[:, :size], height, width, self.patch)

    def position_ids(
        self, count: int, height: int, width: int, device: Any, dtype: Any
    ) -> tuple[Any, Any]:
        """(text ids, image ids) for `count` text tokens and a height x width token grid."""
        return text_ids(count, device, dtype), image_ids(height, width, count, device, dtype)
