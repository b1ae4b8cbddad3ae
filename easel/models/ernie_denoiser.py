"""The ERNIE-Image network adapter of the sampler loop, calling ErnieImageTransformer2DModel as
ErnieImagePipeline does: the latents as they are ([B, 128, h, w], already patchified and
normalised by the Flux.2 VAE handle; the transformer embeds each latent pixel as one token),
the text states [B, T, D] with their lengths (`text_lens`; the transformer masks padding and
places image tokens after the text on the rope's first axis), the timestep as the scheduler's
(sigma * 1000). Each side of classifier-free guidance is its own call, with its own unpadded
text: the pipeline batches both sides, padded to the longer, and masks the padding out (the
same numbers per image). The loop keeps latents [B, C, h, w].
"""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch


class ErnieImageNetwork:
    """Calls an ErnieImageTransformer2DModel (`call`: the module, or it with LoRA patches)."""

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
        import torch

        width = int(self.transformer.config.text_in_dim)
        embeds = cond.get("embeds")
        if embeds is None or embeds.dim() != 3:
            raise ValueError(
                "ERNIE-Image needs Ministral-3-3B's text embeddings: encode the prompt with its "
                "CLIP (TextEncoderLoader type flux2, the ministral-3-3b file)"
            )
        if embeds.shape[-1] != width:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this ERNIE-Image model "
                f"expects {width} (Ministral-3-3B's): was the CLIP made for another model?"
            )
        if cond.get("control"):
            raise ValueError("ControlNet conditioning is not supported for ERNIE-Image models")
        if cond.get("reference_latents"):
            raise ValueError("ERNIE-Image takes no reference latents (ReferenceLatent)")
        mask = cond.get("attention_mask")
        lengths = embeds.shape[1]
        if mask is not None and tuple(mask.shape) == tuple(embeds.shape[:2]):
            count = int(mask[0].sum())
            if mask.shape[0] != 1 or not bool(mask[0, :count].all()):
                raise ValueError("ERNIE-Image takes one prompt whose padding, if any, is last")
            lengths = count
        lens = torch.full((batch,), lengths, dtype=torch.long, device=device)
        return Cond(to_batch(embeds, batch, device, dtype), {"lens": lens}, None)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call, with its own text length

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        batch = x.shape[0]
        lens = cond.added["lens"] if cond.added else None
        hidden = cond.encoder_hidden_states
        if lens is None:
            import torch

            lens = torch.full((batch,), hidden.shape[1], dtype=torch.long, device=x.device)
        out = self.call(
            hidden_states=x,
            timestep=t.expand(batch).to(x.dtype),
            text_bth=hidden,
            text_lens=lens,
            return_dict=False,
        )[0]
        return out.to(x.dtype)
