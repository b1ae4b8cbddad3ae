"""The registry: every family Easel knows, and the two ways of telling which one a model is
(the keys of a single file; the configs of a diffusers folder)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from easel.models import qwen_layered
from easel.models.families import (
    anima,
    boogu,
    chroma,
    ernie,
    fibo2,
    flux,
    flux2,
    flux3,
    hidream,
    hunyuan15,
    ideogram4,
    joyimage,
    kandinsky5,
    krea2,
    longcat,
    lotus,
    lumina,
    mage_flow,
    minimax_h3,
    omnigen2,
    ovis,
    qwen_image,
    qwen_image21,
    sd,
    sd3,
    wan,
)
from easel.models.families.base import Family, LatentFormat, TextPart

# Diffusers folders that are not Stable Diffusion checkpoints proper: the demo model family
# (easel-shapes, whose folders are Stable Diffusion pipelines of its own latent format) and
# unCLIP decoders conditioned on CLIP image embeddings.
UNCLIP = Family("unclip", "unCLIP decoder (image-embedding conditioned)", text=())

FAMILIES: tuple[Family, ...] = (
    *sd.FAMILIES,
    *flux.FAMILIES,
    *flux2.FAMILIES,
    *flux3.FAMILIES,
    *qwen_image.FAMILIES,
    *qwen_image21.FAMILIES,
    *qwen_layered.FAMILIES,
    *lumina.FAMILIES,
    *hidream.FAMILIES,
    *chroma.FAMILIES,
    *krea2.FAMILIES,
    *ideogram4.FAMILIES,
    *fibo2.FAMILIES,
    *mage_flow.FAMILIES,
    *ernie.FAMILIES,
    *sd3.FAMILIES,
    *longcat.FAMILIES,
    *ovis.FAMILIES,
    *lotus.FAMILIES,
    *kandinsky5.FAMILIES,
    *joyimage.FAMILIES,
    *wan.FAMILIES,
    *hunyuan15.FAMILIES,
    *anima.FAMILIES,
    *minimax_h3.FAMILIES,
    *omnigen2.FAMILIES,
    *boogu.FAMILIES,
    UNCLIP,
)


def by_name(name: str) -> Family:
    for family in FAMILIES:
        if family.name == name:
            return family
    raise KeyError(f"no model family {name!r}; known: {', '.join(f.name for f in FAMILIES)}")


def _get(config: Any, key: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(key, default)
    return getattr(config, key, default)


def folder_family(
    unet_config: Any,
    *,
    scheduler_config: Mapping[str, Any] | None = None,
    vae_config: Any = None,
    text_parts: tuple[str, ...] = ("",),
) -> Family:
    """The family of a diffusers folder, from its UNet, scheduler and VAE configs and which
    text encoders it has ("" for text_encoder, "g" for text_encoder_2 alone, ("l", "g") both).

    A folder carries its own latent scaling and prediction type; SD 2 folders hold the text
    tower already cut to the layer the pipeline uses, so their text part reads the last layer.
    """
    if (
        _get(unet_config, "addition_embed_type") == "image"
        or _get(unet_config, "encoder_hid_dim_type") == "image_proj"
    ):
        base = UNCLIP
    elif _get(unet_config, "addition_embed_type") == "text_time":
        inpaint = _get(unet_config, "in_channels") == 9
        refiner = text_parts == ("g",)
        base = sd.SDXL_REFINER if refiner else sd.SDXL_INPAINT if inpaint else sd.SDXL
    else:
        inpaint = _get(unet_config, "in_channels") == 9
        if _get(unet_config, "cross_attention_dim") == 1024 or _get(
            unet_config, "use_linear_projection"
        ):
            base = sd.SD2_INPAINT if inpaint else sd.SD2
            base = replace(base, text=(replace(sd.OPEN_CLIP_H, layer=-1),))
        else:
            base = sd.SD1_INPAINT if inpaint else sd.SD1
    prediction = (scheduler_config or {}).get("prediction_type") or base.prediction_type
    if prediction == "v_prediction" and base.name == "sd2":
        base = replace(base, name="sd2-v", label=sd.SD2_V.label)
    latent = base.latent
    if vae_config is not None:
        latent = LatentFormat(
            channels=int(_get(vae_config, "latent_channels", 4)),
            scaling_factor=float(_get(vae_config, "scaling_factor", None) or 1.0),
            shift_factor=float(_get(vae_config, "shift_factor", None) or 0.0),
            factor=2 ** (len(_get(vae_config, "block_out_channels", (0,) * 4)) - 1),
        )
    return replace(base, latent=latent, prediction_type=str(prediction))


def text_part(family: Family, key: str) -> TextPart:
    """The family's text part for a tower key ("" / "l" / "g"), or a plain last-layer one."""
    for part in family.text:
        if part.key == key:
            return part
    return TextPart(key)
