"""The Flux network adapter of the sampler loop: latents [B, 16, h, w] packed into 2x2 patches
(tokens of 64), image and text position ids, timesteps as sigmas (t / 1000), the embedded
guidance scale, T5 embeddings and CLIP-L's pooled embedding, as diffusers' FluxPipeline calls
FluxTransformer2DModel; Fill's masked-image channels, Canny/Depth's control-image channels and
Kontext's reference-image tokens as FluxFillPipeline, FluxControlPipeline and
FluxKontextPipeline add them. The loop keeps latents unpacked, so
schedulers, inpainting masks and latent previews see the usual layout."""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch
from easel.models.families.flux import DEFAULT_GUIDANCE


def pack(latents: Any, patch: int = 2) -> Any:
    """[B, C, h, w] -> [B, (h/2)(w/2), C*4] (FluxPipeline's _pack_latents)."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // patch) * (w // patch), c * patch * patch)


def unpack(tokens: Any, height: int, width: int, patch: int = 2) -> Any:
    """[B, (h/2)(w/2), C*4] -> [B, C, h, w] (FluxPipeline's _unpack_latents)."""
    b, _, dim = tokens.shape
    channels = dim // (patch * patch)
    x = tokens.view(b, height // patch, width // patch, channels, patch, patch)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(b, channels, height, width)


def image_ids(height: int, width: int, device: Any, dtype: Any) -> Any:
    """Position ids (0, row, column) of the packed tokens (FluxPipeline's)."""
    import torch

    ids = torch.zeros(height, width, 3)
    ids[..., 1] = ids[..., 1] + torch.arange(height)[:, None]
    ids[..., 2] = ids[..., 2] + torch.arange(width)[None, :]
    return ids.reshape(height * width, 3).to(device=device, dtype=dtype)


class FluxNetwork:
    """Calls a FluxTransformer2DModel (`call`: the module, or it with LoRA patches bound)."""

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
        import torch

        config = self.transformer.config
        embeds, pooled = cond.get("embeds"), cond.get("pooled")
        if embeds is None or pooled is None:
            raise ValueError(
                "Flux needs T5 embeddings and CLIP-L's pooled embedding: encode "
                "the prompt with a Flux CLIP (DualTextEncoderLoader type flux)"
            )
        if embeds.shape[-1] != config.joint_attention_dim:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this Flux "
                f"model expects {config.joint_attention_dim} (its T5 encoder's): "
                "was the CLIP made for another model?"
            )
        if pooled.shape[-1] != config.pooled_projection_dim:
            raise ValueError(
                f"the pooled text embedding has width {pooled.shape[-1]} but this "
                f"Flux model expects {config.pooled_projection_dim} (CLIP-L's): was "
                "the CLIP made for another model?"
            )
        if cond.get("control"):
            raise ValueError("ControlNet conditioning is not supported for Flux models yet")

        def batched(value: Any) -> Any:
            return to_batch(value, batch, device, dtype)

        added: dict[str, Any] = {
            "pooled_projections": batched(pooled),
            "guidance": None,
            "fill": None,
        }
        extra = int(config.in_channels) - int(config.out_channels or config.in_channels)
        if extra and extra == int(config.out_channels):  # Canny/Depth: one latent more
            added["fill"] = batched(self.control_tokens(cond))
        elif extra:
            added["fill"] = batched(self.fill_tokens(cond, extra))
        if cond.get("reference_latents"):
            tokens, ids = self.reference_tokens(cond["reference_latents"], device, dtype)
            added["reference"] = (batched(tokens), ids)
        if config.guidance_embeds:
            scale = float(cond.get("guidance", DEFAULT_GUIDANCE))
            added["guidance"] = torch.full([batch], scale, device=device, dtype=torch.float32)
        return Cond(batched(embeds), added, None)

    def fill_tokens(self, cond: dict[str, Any], extra: int) -> Any:
        """Flux Fill's extra input per token: the masked image's latent and the pixel mask
        (each latent pixel's 8x8 mask values as channels), packed as FluxFillPipeline does."""
        import torch

        masked, mask = cond.get("concat_latent_image"), cond.get("concat_mask")
        if masked is None or mask is None:
            raise ValueError(
                f"{self.family.label} paints inside a mask: give it the "
                "conditioning of InpaintModelConditioning (image and mask)"
            )
        h, w = int(masked.shape[-2]), int(masked.shape[-1])
        factor = int(mask.shape[-2]) // h
        if tuple(mask.shape[-2:]) != (h * factor, w * factor):
            raise ValueError(
                f"the mask ({tuple(mask.shape[-2:])}) does not match the image latent ({h}x{w})"
            )
        mask = mask[:, 0].float().view(mask.shape[0], h, factor, w, factor)
        mask = mask.permute(0, 2, 4, 1, 3).reshape(mask.shape[0], factor * factor, h, w)
        tokens = torch.cat([pack(masked.float(), self.patch), pack(mask, self.patch)], dim=-1)
        if tokens.shape[-1] != extra:
            raise ValueError(
                f"{self.family.label} takes {extra} extra channels per token, the "
                f"inpainting conditioning gives {tokens.shape[-1]}"
            )
        return tokens

    def control_tokens(self, cond: dict[str, Any]) -> Any:
        """Flux Canny/Depth's extra input per token: the control image's latent, packed as
        FluxControlPipeline packs it (no mask)."""
        image = cond.get("concat_latent_image")
        if image is None:
            raise ValueError(
                f"{self.family.label} follows a control image (a Canny or depth map): give "
                "it the conditioning of InstructPixToPixConditioning"
            )
        return pack(image.float(), self.patch)

    def reference_tokens(self, latents: list[Any], device: Any, dtype: Any) -> tuple[Any, Any]:
        """Kontext's reference images (ReferenceLatent): each latent packed into tokens after
        the image's, with position ids whose first coordinate is 1 (FluxKontextPipeline's);
        further references are placed beside or below the ones before, as ComfyUI's "offset"
        method places them."""
        import torch

        tokens, ids = [], []
        height = width = 0  # the area the references so far take, in latent pixels
        for latent in latents:
            h, w = int(latent.shape[-2]), int(latent.shape[-1])
            if h % self.patch or w % self.patch:
                raise ValueError(
                    f"a reference latent of {h}x{w} does not pack into "
                    f"{self.patch}x{self.patch} patches"
                )
            top = left = 0
            if h + height > w + width:
                left = width
            else:
                top = height
            height, width = max(height, h + top), max(width, w + left)
            ref_ids = image_ids(h // self.patch, w // self.patch, device, dtype)
            ref_ids[:, 0] = 1
            ref_ids[:, 1] += top // self.patch
            ref_ids[:, 2] += left // self.patch
            tokens.append(pack(latent.to(device=device, dtype=dtype), self.patch))
            ids.append(ref_ids)
        return torch.cat(tokens, dim=1), torch.cat(ids)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call, as FluxPipeline's true CFG does

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        import torch

        batch, _, height, width = x.shape
        if height % self.patch or width % self.patch:
            raise ValueError(
                f"Flux packs latents in {self.patch}x{self.patch} patches: the "
                "image's width and height must be multiples of "
                f"{8 * self.patch}"
            )
        hidden = cond.encoder_hidden_states
        text_ids = torch.zeros(hidden.shape[1], 3, device=x.device, dtype=x.dtype)
        img_ids = image_ids(height // self.patch, width // self.patch, x.device, x.dtype)
        timestep = t.expand(batch).to(x.dtype) / 1000
        tokens = pack(x, self.patch)
        count = tokens.shape[1]
        if cond.added and cond.added.get("fill") is not None:
            fill = cond.added["fill"]
            if fill.shape[1] != count:
                raise ValueError(
                    f"the conditioning's image latent packs into {fill.shape[1]} tokens, the "
                    f"latent ({height}x{width}) into {count}: use the latent of the same image "
                    "(InpaintModelConditioning's or InstructPixToPixConditioning's)"
                )
            tokens = torch.cat([tokens, fill.to(tokens.dtype)], dim=2)
        if cond.added and cond.added.get("reference") is not None:
            ref_tokens, ref_ids = cond.added["reference"]
            tokens = torch.cat([tokens, ref_tokens.to(tokens.dtype)], dim=1)
            img_ids = torch.cat([img_ids, ref_ids.to(img_ids.dtype)])
        out = self.call(
            hidden_states=tokens,
            timestep=timestep,
            guidance=cond.added["guidance"] if cond.added else None,
            pooled_projections=cond.added["pooled_projections"] if cond.added else None,
            encoder_hidden_states=hidden,
            txt_ids=text_ids,
            img_ids=img_ids,
            return_dict=False,
        )[0]
        return unpack(out[:, :count], height, width, self.patch)
