"""The Fibo 2.0 network adapter of the sampler loop, calling BriaFibo2Transformer2DModel as
BriaFibo2Pipeline does. The loop keeps Easel's Flux.2 latents [B, 128, h, w] (the VAE's 32
channels in 2x2 patches, channel c * 4 + row * 2 + column, normalised with the VAE's batch-norm
statistics); the transformer reads the same normalised latents unpatchified, [B, 32, 2h, 2w]
(the pipeline's `_unpatchify_latents`), and its velocity is patchified back.

- The conditioning's `embeds` [1, T, 6 * F] (easel.models.fibo2_text) become the transformer's
  six bundles [B, 6, T, F]; a prompt is never padded, so no text mask is passed (the pipeline
  passes none when nothing is padded).
- The noise level the transformer takes is sigma (t / 1000), and it predicts the velocity
  noise - image: Easel's flow prediction, as the pipeline steps with it directly.
- Reference latents (ReferenceLatent, the images to edit) are the transformer's
  `context_latents`, one [B, 32, H, W] each, in order.
- Each side of the guidance is its own call, as in the pipeline (batching would pad the two
  prompts to one length, which changes the Perceiver's gist count).
"""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond
from easel.models.families.fibo2 import OUT_LAYERS, PATCH

BUNDLES = len(OUT_LAYERS)


def unpatchify(latents: Any) -> Any:
    """[B, 128, h, w] (channel c * 4 + row * 2 + column) -> [B, 32, 2h, 2w]."""
    b, c, h, w = latents.shape
    x = latents.reshape(b, c // (PATCH * PATCH), PATCH, PATCH, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // (PATCH * PATCH), h * PATCH, w * PATCH)


def patchify(latents: Any) -> Any:
    """The inverse of `unpatchify`."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * PATCH * PATCH, h // PATCH, w // PATCH)


class Fibo2Network:
    """Calls a BriaFibo2Transformer2DModel (`call`: the module, or it with LoRA patches
    bound)."""

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
        import torch

        if cond.get("control"):
            raise ValueError("ControlNet conditioning is not supported for Fibo 2.0 models")
        features = int(self.transformer.config.cap_feat_dim)
        embeds = cond.get("embeds")
        if embeds is None or embeds.dim() != 3:
            raise ValueError(
                "Fibo 2.0 needs Qwen3-VL's hidden-state bundles: encode the prompt with a "
                "Fibo 2.0 CLIP (TextEncoderLoader type fibo2)"
            )
        if embeds.shape[-1] != BUNDLES * features:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this Fibo 2.0 model reads "
                f"{BUNDLES} bundles of {features}: was the CLIP made for another model?"
            )
        hidden = torch.as_tensor(embeds).to(device=device, dtype=dtype)
        hidden = hidden.unflatten(-1, (BUNDLES, features)).permute(0, 2, 1, 3)
        if hidden.shape[0] != batch:
            hidden = hidden.expand(batch, *hidden.shape[1:])
        references = [
            unpatchify(torch.as_tensor(r).to(device=device, dtype=dtype)).expand(batch, -1, -1, -1)
            for r in cond.get("reference_latents") or []
        ]
        return Cond(hidden.contiguous(), {"context": references}, None)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call, as in the pipeline

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        assert cond.added is not None
        batch = x.shape[0]
        sigma = (t.float().reshape(-1)[:1] / 1000.0).expand(batch).to(x.dtype)
        out = self.call(
            hidden_states=unpatchify(x),
            timestep=sigma,
            encoder_hidden_states=cond.encoder_hidden_states,
            encoder_attention_mask=None,
            context_latents=cond.added["context"] or None,
            return_dict=False,
        )[0]
        return patchify(out)
