"""The Mage-Flow network adapter of the sampler loop, calling MageFlowTransformer2DModel as
ComfyUI's Mage-Flow model does: latents [B, 128, h, w] as they are (one token per latent pixel,
the transformer flattens them), the noise level sigma (the sampler's t / 1000; the transformer
scales it by 1000 inside its timestep embedding), the text's hidden states, and reference
latents (TextEncodeMageFlowEdit's images to edit, or ReferenceLatent) after the image's tokens
on the RoPE frame axis 1..N. The velocity comes back [B, 128, h, w]: Easel's flow prediction.
Each side of the guidance is its own call (their text lengths differ)."""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch


class MageFlowNetwork:
    """Calls a MageFlowTransformer2DModel (`call`: the module, or it with LoRA patches bound)."""

    def __init__(self, transformer: Any, call: Any, family: Any) -> None:
        self.transformer, self.call, self.family = transformer, call, family

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
                "Mage-Flow needs Qwen3-VL's hidden states: encode the prompt with a Mage-Flow "
                "CLIP (TextEncoderLoader type mage)"
            )
        if embeds.shape[-1] != config.joint_attention_dim:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this Mage-Flow model "
                f"expects {config.joint_attention_dim} (Qwen3-VL 4B's): was the CLIP made for "
                "another model?"
            )
        if cond.get("control"):
            raise ValueError("ControlNet conditioning is not supported for Mage-Flow models")
        references = []
        for latent in cond.get("reference_latents") or []:
            if latent.dim() != 4 or latent.shape[1] != config.in_channels:
                raise ValueError(
                    f"a reference latent has shape {tuple(latent.shape)}; Mage-Flow takes "
                    f"[B, {config.in_channels}, h, w]: encode the image with the Mage-VAE"
                )
            references.append(to_batch(latent, batch, device, dtype))
        return Cond(to_batch(embeds, batch, device, dtype), {"references": references}, None)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call (their text lengths differ)

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        added = cond.added or {}
        sigma = (t.float().reshape(-1)[:1] / 1000.0).expand(x.shape[0])
        return self.call(
            hidden_states=x,
            encoder_hidden_states=cond.encoder_hidden_states,
            timestep=sigma.to(x.device),
            reference_latents=added.get("references") or (),
        )
