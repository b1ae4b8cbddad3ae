"""The Qwen-Image 2.1 network adapter of the sampler loop, as QwenImage21Pipeline calls
QwenImage21Transformer2DModel: latents [B, 64, h, w] flattened to tokens (no patches), one
`img_shapes` entry (frames, rows, columns) per image, `img_mask` marking the text encoder's image
slots followed by one slot per 2x2 latent tokens of the target, timesteps as sigmas (t / 1000),
and the prediction for the target's tokens (the last ones) alone. Reference latents (the edit
templates', TextEncodeQwenImage21's) go before the target's tokens, in order, each with its own
`img_shapes` entry; they fill the image slots the text encoder reserved for them. The loop keeps
latents unpacked.

Prefix cache: text tokens are modulated from t = 0 and attend causally, so their keys and values
are the same at every step. With the family's `kv_cache` "auto" (the default, as the pipeline's
`use_kv_cache` and ComfyUI's prefix cache) each side of the guidance gets a
QwenImage21KVCache: the first call fills it ("extract"), later calls reuse it ("cached") and
compute the target's tokens only. "off" recomputes the prefix at every call. The cache belongs to
one sampling run (the Cond made by `condition`), and is refilled when the target's size or batch
changes.
"""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch


class QwenImage21Network:
    """Calls a QwenImage21Transformer2DModel (`call`: the module, or it with LoRA patches)."""

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
                "Qwen-Image 2.1 needs Qwen3-VL embeddings: encode the prompt with "
                "TextEncodeQwenImage21 (or TextEncode) and a Qwen3-VL CLIP (TextEncoderLoader "
                "type qwen_image)"
            )
        if embeds.shape[-1] != config.context_in_dim:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this Qwen-Image 2.1 model "
                f"expects {config.context_in_dim} (Qwen3-VL's): was the CLIP made for another "
                "model?"
            )
        if cond.get("control"):
            raise ValueError("ControlNet conditioning is not supported for Qwen-Image 2.1 models")
        import torch

        image_pad = cond.get("image_pad")
        if image_pad is None:
            image_pad = torch.zeros(1, embeds.shape[1], dtype=torch.bool)
        references = list(cond.get("reference_latents") or [])
        tokens, shapes = [], []
        for latent in references:
            if latent.dim() == 5:  # [B, C, 1, h, w], a video VAE's one frame
                latent = latent[:, :, 0]
            h, w = int(latent.shape[-2]), int(latent.shape[-1])
            packed = latent[:1].to(device=device, dtype=dtype).flatten(2).transpose(1, 2)
            tokens.append(to_batch(packed, batch, device, dtype))
            shapes.append((1, h, w))
        slots = int(image_pad.sum())
        if sum(h * w for _, h, w in shapes) != 4 * slots:
            raise ValueError(
                f"the prompt was encoded with {slots} image slots (2x2 latent tokens each) but "
                f"the conditioning has {len(shapes)} reference latents of "
                f"{[(h, w) for _, h, w in shapes]}: encode the images and their latents "
                "together (TextEncodeQwenImage21 with its vae)"
            )
        added: dict[str, Any] = {
            "image_pad": image_pad.to(device=device)[:1],
            "reference": torch.cat(tokens, dim=1) if tokens else None,
            "shapes": shapes,
            "cache": None,
            "cache_key": None,
        }
        return Cond(to_batch(embeds, batch, device, dtype), added, None)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call (and its own cache), as the pipeline's true CFG

    def _cache(self, added: dict[str, Any], key: tuple[Any, ...]) -> tuple[Any, str | None]:
        """(the cache, its mode) for this call, or (None, None) when caching is off."""
        if getattr(self.family, "kv_cache", "auto") == "off":
            return None, None
        if not getattr(self.transformer.config, "causal_condition", False):
            return None, None
        from diffusers.models.transformers.transformer_qwenimage21 import QwenImage21KVCache

        if added.get("cache") is None or added.get("cache_key") != key:
            added["cache"] = QwenImage21KVCache(len(self.transformer.transformer_blocks))
            added["cache_key"] = key
            return added["cache"], "extract"
        return added["cache"], "cached"

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        import torch

        batch, channels, height, width = x.shape
        if (height * width) % 4:
            raise ValueError(
                "Qwen-Image 2.1 groups latent tokens 2x2 per text-encoder slot: the image's "
                "width and height must be multiples of 32"
            )
        tokens = x.flatten(2).transpose(1, 2)
        added = cond.added or {}
        if added.get("reference") is not None:  # reference images first, the target last
            tokens = torch.cat([added["reference"].to(tokens.dtype), tokens], dim=1)
        image_pad = added["image_pad"]
        slots = torch.cat(
            [image_pad, image_pad.new_ones(image_pad.shape[0], height * width // 4)], dim=1
        )
        cache, mode = self._cache(added, (batch, height, width, x.device, x.dtype))
        out = self.call(
            hidden_states=tokens,
            timestep=t.expand(batch).to(x.dtype) / 1000,
            encoder_hidden_states=cond.encoder_hidden_states,
            encoder_hidden_states_mask=None,
            img_shapes=[[*added.get("shapes", []), (1, height, width)]] * batch,
            img_mask=slots,
            kv_cache=cache,
            kv_cache_mode=mode,
            return_dict=False,
        )[0]
        out = out[:, -height * width :]
        return out.transpose(1, 2).reshape(batch, channels, height, width)
