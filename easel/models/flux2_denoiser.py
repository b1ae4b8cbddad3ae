"""The Flux.2 network adapter of the sampler loop: latents [B, 128, h, w] (already patchified
by the VAE handle) flattened into one token per latent pixel, position ids of 4 axes (t, h, w,
l) for image and text tokens, timesteps as sigmas (t / 1000), dev's embedded guidance scale, and
reference images (ReferenceLatent) as extra tokens at t = 10, 20, ..., as Flux2Pipeline and
Flux2KleinPipeline call Flux2Transformer2DModel. The loop keeps latents [B, C, h, w], so
schedulers, masks and previews see the usual layout."""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch
from easel.models.families.flux2 import DEFAULT_GUIDANCE, REFERENCE_TIME_SCALE

# ComfyUI's FluxKontextMultiReferenceLatentMethod names; Flux.2 places references by index.
REFERENCE_METHODS = ("index",)


def pack(latents: Any) -> Any:
    """[B, C, h, w] -> [B, h*w, C] (Flux2Pipeline's _pack_latents)."""
    b, c, h, w = latents.shape
    return latents.reshape(b, c, h * w).permute(0, 2, 1)


def unpack(tokens: Any, height: int, width: int) -> Any:
    """[B, h*w, C] -> [B, C, h, w]."""
    b, _, c = tokens.shape
    return tokens.permute(0, 2, 1).reshape(b, c, height, width)


def position_ids(t: int, height: int, width: int, device: Any, dtype: Any) -> Any:
    """(t, row, column, 0) of each token of an h x w latent (Flux2Pipeline's
    _prepare_latent_ids and _prepare_image_ids)."""
    import torch

    ids = torch.cartesian_prod(
        torch.tensor([t]), torch.arange(height), torch.arange(width), torch.arange(1)
    )
    return ids.to(device=device, dtype=dtype)


def text_ids(length: int, device: Any, dtype: Any) -> Any:
    """(0, 0, 0, position) of each text token (Flux2Pipeline's _prepare_text_ids)."""
    import torch

    ids = torch.zeros(length, 4)
    ids[:, 3] = torch.arange(length)
    return ids.to(device=device, dtype=dtype)


class Flux2Network:
    """Calls a Flux2Transformer2DModel (`call`: the module, or it with LoRA patches bound)."""

    def __init__(self, transformer: Any, call: Any, family: Any) -> None:
        self.transformer, self.call, self.family = transformer, call, family
        self.step, self.total = 0, 0
        self.kv_caches: dict[int, Any] = {}  # FluxKVCache: reference keys/values per Cond

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
        embeds = cond.get("embeds")
        if embeds is None:
            raise ValueError(
                f"{self.family.label} needs its text encoder's hidden states: encode the "
                "prompt with a Flux.2 CLIP (TextEncoderLoader type flux2)"
            )
        if embeds.shape[-1] != config.joint_attention_dim:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this {self.family.label} "
                f"model expects {config.joint_attention_dim} (three hidden layers of its text "
                "encoder): was the CLIP made for another model?"
            )
        if cond.get("control"):
            raise ValueError(f"ControlNet conditioning is not supported for {self.family.label}")
        added: dict[str, Any] = {"guidance": None}
        if config.guidance_embeds:
            scale = float(cond.get("guidance", DEFAULT_GUIDANCE))
            added["guidance"] = torch.full([batch], scale, device=device, dtype=torch.float32)
        if cond.get("reference_latents"):
            method = str(cond.get("reference_latents_method", "index"))
            if method not in REFERENCE_METHODS:
                raise ValueError(
                    f"reference latent method {method!r} is not one {self.family.label} "
                    f"takes here (Easel has: {', '.join(REFERENCE_METHODS)})"
                )
            added["reference"] = self.reference_tokens(
                cond["reference_latents"], batch, device, dtype
            )
        return Cond(to_batch(embeds, batch, device, dtype), added, None)

    def reference_tokens(
        self, latents: list[Any], batch: int, device: Any, dtype: Any
    ) -> tuple[Any, Any]:
        """Reference images (ReferenceLatent): each latent's tokens after the image's, with
        time coordinate 10, 20, ... (Flux2Pipeline's _prepare_image_ids). A reference of one
        image serves every image of the batch; one of the batch's size, one each."""
        import torch

        channels = int(self.transformer.config.in_channels)
        tokens, ids = [], []
        for index, latent in enumerate(latents):
            if latent.shape[1] != channels:
                raise ValueError(
                    f"a reference latent has {latent.shape[1]} channels, {self.family.label} "
                    f"takes {channels}: encode the image with the Flux.2 VAE"
                )
            h, w = int(latent.shape[-2]), int(latent.shape[-1])
            t = REFERENCE_TIME_SCALE + REFERENCE_TIME_SCALE * index
            tokens.append(to_batch(pack(latent), batch, device, dtype))
            ids.append(position_ids(t, h, w, device, dtype))
        return torch.cat(tokens, dim=1), torch.cat(ids)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call, as Flux2KleinPipeline's true CFG does

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        import torch

        batch, _, height, width = x.shape
        hidden = cond.encoder_hidden_states
        img_ids = position_ids(0, height, width, x.device, x.dtype)
        tokens = pack(x)
        count = tokens.shape[1]
        added = cond.added or {}
        common = {
            "encoder_hidden_states": hidden,
            "timestep": t.expand(batch).to(x.dtype) / 1000,
            "txt_ids": text_ids(hidden.shape[1], x.device, x.dtype),
            "guidance": added.get("guidance"),
            "return_dict": False,
        }
        if added.get("reference") is not None and getattr(self.family, "kv_cache", False):
            return unpack(self.kv_call(tokens, img_ids, cond, common), height, width)
        if added.get("reference") is not None:
            ref_tokens, ref_ids = added["reference"]
            tokens = torch.cat([tokens, ref_tokens.to(tokens.dtype)], dim=1)
            img_ids = torch.cat([img_ids, ref_ids.to(img_ids.dtype)])
        out = self.call(hidden_states=tokens, img_ids=img_ids, **common)[0]
        return unpack(out[:, :count], height, width)

    def kv_call(self, tokens: Any, img_ids: Any, cond: Cond, common: dict[str, Any]) -> Any:
        """FluxKVCache, as Flux2KleinKVPipeline: the first call runs the reference tokens before
        the image's (they attend only to each other, modulated at timestep 0) and keeps their
        keys and values; later calls run the image's tokens with those."""
        import torch

        cache = self.kv_caches.get(id(cond))
        if cache is not None:
            return self.call(
                hidden_states=tokens,
                img_ids=img_ids,
                kv_cache=cache,
                kv_cache_mode="cached",
                **common,
            )[0]
        use_kv_processors(self.transformer)
        ref_tokens, ref_ids = (cond.added or {})["reference"]
        out, self.kv_caches[id(cond)] = self.call(
            hidden_states=torch.cat([ref_tokens.to(tokens.dtype), tokens], dim=1),
            img_ids=torch.cat([ref_ids.to(img_ids.dtype), img_ids]),
            kv_cache_mode="extract",
            num_ref_tokens=int(ref_tokens.shape[1]),
            ref_fixed_timestep=0.0,
            **common,
        )
        return out


def use_kv_processors(transformer: Any) -> None:
    """Give the transformer diffusers' KV-cache-aware attention processors (as
    Flux2KleinKVPipeline does); without KV arguments they compute what the default ones do."""
    from diffusers.models.transformers.transformer_flux2 import (
        Flux2KVAttnProcessor,
        Flux2KVParallelSelfAttnProcessor,
    )

    for block in transformer.transformer_blocks:
        if not isinstance(block.attn.processor, Flux2KVAttnProcessor):
            block.attn.set_processor(Flux2KVAttnProcessor())
    for block in transformer.single_transformer_blocks:
        if not isinstance(block.attn.processor, Flux2KVParallelSelfAttnProcessor):
            block.attn.set_processor(Flux2KVParallelSelfAttnProcessor())
