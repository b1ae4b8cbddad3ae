"""From a CONDITIONING dict to the UNet's keyword inputs, for every family: text embeddings,
unCLIP image embeddings, and SDXL's pooled embedding with size (or aesthetic score) time ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Cond:
    """What the UNet is called with for one side of the guidance. `control` is the
    conditioning's ControlNet chain (`cond["control"]`, see easel.models.controlnet)."""

    encoder_hidden_states: Any
    added: dict[str, Any] | None
    control: Any = None


def sdxl_time_ids(
    cond: dict[str, Any], kind: str, pixel_size: tuple[int, int], negative: bool
) -> list[float]:
    """SDXL's micro-conditioning: (original h, w, crop top, left, target h, w) for the base,
    (original h, w, crop top, left, aesthetic score) for the refiner. Sizes default to the
    image being made and the score to 6 (2.5 for the negative), as in diffusers and ComfyUI."""
    info = cond.get("sdxl") or {}
    height = float(info.get("height") or pixel_size[0])
    width = float(info.get("width") or pixel_size[1])
    crop_h, crop_w = float(info.get("crop_h", 0)), float(info.get("crop_w", 0))
    if kind == "sdxl_refiner":
        score = info.get("aesthetic_score")
        score = float(score) if score is not None else (2.5 if negative else 6.0)
        return [height, width, crop_h, crop_w, score]
    target_h = float(info.get("target_height") or pixel_size[0])
    target_w = float(info.get("target_width") or pixel_size[1])
    return [height, width, crop_h, crop_w, target_h, target_w]


def added_kind(unet: Any, family: Any) -> str | None:
    """ "sdxl", "sdxl_refiner" or None: the family says; a bare UNet is told by its config."""
    if family is not None:
        return family.added_cond  # type: ignore[no-any-return]
    config = unet.config
    if getattr(config, "addition_embed_type", None) != "text_time":
        return None
    ids = (
        config.projection_class_embeddings_input_dim - config.addition_time_embed_dim * 5
    ) % config.addition_time_embed_dim
    return "sdxl_refiner" if ids == 0 and config.cross_attention_dim == 1280 else "sdxl"


def to_batch(value: Any, batch: int, device: Any, dtype: Any) -> Any:
    """A conditioning tensor on `device` in `dtype` with `batch` rows (one row is repeated)."""
    value = value.to(device=device, dtype=dtype)
    if value.shape[0] == batch:
        return value
    if value.shape[0] == 1:
        return value.expand(batch, *value.shape[1:])
    raise ValueError(f"conditioning batch {value.shape[0]} does not match latent batch {batch}")


def unet_condition(
    unet: Any,
    cond: dict[str, Any],
    batch: int,
    device: Any,
    dtype: Any,
    *,
    family: Any = None,
    pixel_size: tuple[int, int] = (512, 512),
    negative: bool = False,
) -> Cond:
    """UNet keyword inputs for a CONDITIONING: text embeddings (with SDXL's added inputs), or
    image embeddings for a decoder conditioned on them (Kandinsky 2.2 / unCLIP style)."""
    import torch

    config = unet.config

    def batched(value: Any) -> Any:
        return to_batch(value, batch, device, dtype)

    wants_image = (
        getattr(config, "addition_embed_type", None) == "image"
        or getattr(config, "encoder_hid_dim_type", None) == "image_proj"
    )
    added = None
    hidden = None
    if wants_image:
        if cond.get("image_embeds") is None:
            raise ValueError(
                "this model is a decoder conditioned on CLIP image embeddings: "
                "feed it the conditioning of a PriorSample node"
            )
        added = {"image_embeds": batched(cond["image_embeds"])}
    if getattr(config, "encoder_hid_dim_type", None) != "image_proj":
        if cond.get("embeds") is None:
            raise ValueError("this model needs text embeddings (a TextEncode conditioning)")
        hidden = batched(cond["embeds"])
        if hidden.shape[-1] != config.cross_attention_dim:
            raise ValueError(
                f"text embeddings have width {hidden.shape[-1]} but the model "
                f"expects {config.cross_attention_dim}: was the CLIP from "
                "another checkpoint?"
            )
    kind = added_kind(unet, family)
    if cond.get("unclip") and kind is None:
        raise ValueError(
            "unCLIPConditioning (CLIP vision image embeddings) conditions SDXL models; "
            "this model has no pooled-embedding input to take them"
        )
    if kind is not None:
        pooled = cond.get("pooled")
        if cond.get("unclip"):  # revision: the image embeddings replace the pooled text
            from easel.models.unclip import pooled_embedding

            pooled = pooled_embedding(cond["unclip"])
        if pooled is None:
            raise ValueError(
                "this SDXL model needs a pooled text embedding: encode the prompt "
                "with this checkpoint's CLIP"
            )
        ids = torch.tensor([sdxl_time_ids(cond, kind, pixel_size, negative)])
        expected = (
            config.projection_class_embeddings_input_dim
            - config.addition_time_embed_dim * ids.shape[1]
        )
        if pooled.shape[-1] != expected and cond.get("unclip"):
            raise ValueError(
                f"the CLIP vision image embeddings have width {pooled.shape[-1]} but this "
                f"SDXL model's pooled input is {expected} wide: unCLIPConditioning on SDXL "
                "takes CLIP-G's (clip_vision_g)"
            )
        if pooled.shape[-1] != expected:
            raise ValueError(
                f"the pooled text embedding has width {pooled.shape[-1]} but the "
                f"model expects {expected}: was the CLIP from another checkpoint?"
            )
        added = {"text_embeds": batched(pooled), "time_ids": batched(ids)}
    return Cond(hidden, added, cond.get("control"))


def stack(a: Cond, b: Cond) -> Cond | None:
    """Both sides as one batch (uncond first, as diffusers pipelines do), or None if shapes
    differ (prompts of different lengths in chunks, different ControlNet chains)."""
    import torch

    if (a.encoder_hidden_states is None) != (b.encoder_hidden_states is None):
        return None
    if a.control is not b.control:
        return None  # different ControlNet chains: each side is run on its own
    hidden = None
    if a.encoder_hidden_states is not None:
        if a.encoder_hidden_states.shape != b.encoder_hidden_states.shape:
            return None
        hidden = torch.cat([a.encoder_hidden_states, b.encoder_hidden_states])
    added = None
    if a.added is not None and b.added is not None:
        if any(a.added[k].shape != b.added[k].shape for k in a.added):
            return None
        added = {k: torch.cat([a.added[k], b.added[k]]) for k in a.added}
    return Cond(hidden, added, a.control)
