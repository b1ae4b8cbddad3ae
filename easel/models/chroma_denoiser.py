"""The Chroma network adapter of the sampler loop, calling ChromaTransformer2DModel as
diffusers' ChromaPipeline does: latents [B, 16, h, w] packed into 2x2 patches and position ids
(easel.models.flux_denoiser's helpers), timesteps as sigmas (t / 1000), T5 embeddings with the
attention mask over text and image tokens; no pooled embedding, no guidance input (the
approximator makes the modulation from the timestep). Each guidance side is its own call, as
the pipeline makes them."""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch
from easel.models.flux_denoiser import image_ids, pack, unpack


class ChromaNetwork:
    """Calls a ChromaTransformer2DModel (`call`: the module, or it with LoRA patches bound)."""

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

        embeds = cond.get("embeds")
        if embeds is None:
            raise ValueError(
                "Chroma needs T5 embeddings: encode the prompt with a Chroma CLIP "
                "(TextEncoderLoader type chroma)"
            )
        width = int(self.transformer.config.joint_attention_dim)
        if embeds.shape[-1] != width:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this Chroma model "
                f"expects {width} (its T5 encoder's): was the CLIP made for another model?"
            )
        if cond.get("control"):
            raise ValueError("ControlNet conditioning is not supported for Chroma models")
        mask = cond.get("attention_mask")
        if mask is None or mask.shape[-1] != embeds.shape[1]:
            mask = torch.ones(1, embeds.shape[1], dtype=torch.bool)
        return Cond(
            to_batch(embeds, batch, device, dtype),
            {"text_mask": to_batch(mask.to(torch.float32), batch, device, dtype)},
            None,
        )

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call, as ChromaPipeline's CFG does

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        import torch

        batch, _, height, width = x.shape
        if height % self.patch or width % self.patch:
            raise ValueError(
                f"Chroma packs latents in {self.patch}x{self.patch} patches: the image's "
                f"width and height must be multiples of {8 * self.patch}"
            )
        hidden = cond.encoder_hidden_states
        text_ids = torch.zeros(hidden.shape[1], 3, device=x.device, dtype=x.dtype)
        img_ids = image_ids(height // self.patch, width // self.patch, x.device, x.dtype)
        tokens = pack(x, self.patch)
        assert cond.added is not None
        mask = torch.cat(
            [
                cond.added["text_mask"],
                torch.ones(batch, tokens.shape[1], device=x.device, dtype=x.dtype),
            ],
            dim=1,
        )
        out = self.call(
            hidden_states=tokens,
            timestep=t.expand(batch).to(x.dtype) / 1000,
            encoder_hidden_states=hidden,
            txt_ids=text_ids,
            img_ids=img_ids,
            attention_mask=mask,
            return_dict=False,
        )[0]
        return unpack(out, height, width, self.patch)
