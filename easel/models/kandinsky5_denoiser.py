"""The Kandinsky 5 (image) network adapter of the sampler loop, calling
Kandinsky5Transformer3DModel as Kandinsky5T2IPipeline does: latents [B, 16, h, w] handed over
channels-last with one frame ([B, 1, h, w, 16]; the transformer patches them 1x2x2 itself),
the scheduler's timesteps as they are (sigma * 1000), Qwen2.5-VL's embeddings with rotary
positions 0..T-1, CLIP-L's pooled embedding, visual rotary positions (frame 0, rows, columns of
the patch grid) at scale 1. Each guidance side is its own call (the two prompts have their own
lengths and the transformer takes no attention mask), as the pipeline makes them."""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch


class Kandinsky5Network:
    """Calls a Kandinsky5Transformer3DModel (`call`: the module, or it with LoRA patches)."""

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
        embeds, pooled = cond.get("embeds"), cond.get("pooled")
        if embeds is None or pooled is None or embeds.dim() != 3:
            raise ValueError(
                "Kandinsky 5 needs Qwen2.5-VL embeddings and CLIP-L's pooled embedding: encode "
                "the prompt with a CLIP of DualTextEncoderLoader type kandinsky5_image"
            )
        if embeds.shape[-1] != config.in_text_dim:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this Kandinsky 5 model "
                f"expects {config.in_text_dim} (Qwen2.5-VL's): was the CLIP made for another "
                "model?"
            )
        if pooled.shape[-1] != config.in_text_dim2:
            raise ValueError(
                f"the pooled text embedding has width {pooled.shape[-1]} but this Kandinsky 5 "
                f"model expects {config.in_text_dim2} (CLIP-L's): was the CLIP made for "
                "another model?"
            )
        if config.visual_cond:
            raise ValueError(
                "this Kandinsky 5 model takes a conditioning image (image-to-image or video "
                "model); Easel runs the text-to-image models"
            )
        if cond.get("control"):
            raise ValueError("ControlNet conditioning is not supported for Kandinsky 5 models")
        if cond.get("reference_latents"):
            raise ValueError("reference latents are not supported for Kandinsky 5 models")
        added = {"pooled_projections": to_batch(pooled, batch, device, dtype)}
        return Cond(to_batch(embeds, batch, device, dtype), added, None)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call, as Kandinsky5T2IPipeline's CFG does

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        import torch

        batch, _, height, width = x.shape
        patch = self.transformer.config.patch_size
        if height % patch[1] or width % patch[2]:
            raise ValueError(
                f"Kandinsky 5 patches latents {patch[1]}x{patch[2]}: the image's width and "
                f"height must be multiples of {8 * patch[1]}"
            )
        hidden = cond.encoder_hidden_states
        visual_rope_pos = [
            torch.arange(1, device=x.device),
            torch.arange(height // patch[1], device=x.device),
            torch.arange(width // patch[2], device=x.device),
        ]
        out = self.call(
            hidden_states=x.permute(0, 2, 3, 1).unsqueeze(1),
            encoder_hidden_states=hidden,
            pooled_projections=(cond.added or {})["pooled_projections"],
            timestep=t.expand(batch).to(x.dtype),
            visual_rope_pos=visual_rope_pos,
            text_rope_pos=torch.arange(hidden.shape[1], device=x.device),
            scale_factor=(1.0, 1.0, 1.0),
            sparse_params=None,
            return_dict=True,
        ).sample
        return out[:, 0].permute(0, 3, 1, 2)
