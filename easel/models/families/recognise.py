"""Tell a single file's family from its keys and tensor shapes (never its values, but for the
Stable Diffusion 2 v-prediction test that ComfyUI also uses).

The rules give the same answers as diffusers' `infer_diffusers_model_type` on real
checkpoints, but read structure rather than fixed layer indices, so that fine-tunes, pruned files
and the tiny models of the tests are recognised alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from easel.models.families import sd
from easel.models.families.base import Family

UNET_PREFIX = "model.diffusion_model."
SD1_CLIP = "cond_stage_model.transformer."
SD2_CLIP = "cond_stage_model.model."
SDXL_L = "conditioner.embedders.0.transformer."
SDXL_G = "conditioner.embedders.1.model."
REFINER_G = "conditioner.embedders.0.model."


@dataclass(frozen=True)
class Recognised:
    """A family and what in the file said so (shown by `easel models` and in errors)."""

    family: Family
    evidence: tuple[str, ...] = field(default=())
    text_prefixes: tuple[str, ...] = ()  # where each text part's weights are, in part order


def shape(state: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    value = state.get(key)
    return None if value is None else tuple(int(n) for n in value.shape)


def context_dim(state: Mapping[str, Any], prefix: str = UNET_PREFIX) -> int | None:
    """The UNet's cross-attention width (its text embedding width)."""
    for key in state:
        if key.startswith(prefix) and key.endswith(".attn2.to_k.weight"):
            dims = shape(state, key)
            return dims[1] if dims else None
    return None


def summarise(state: Mapping[str, Any]) -> str:
    """What a file holds, in a few words, for error messages."""
    prefixes: dict[str, int] = {}
    for key in state:
        head = ".".join(key.split(".")[:2])
        prefixes[head] = prefixes.get(head, 0) + 1
    top = sorted(prefixes.items(), key=lambda item: -item[1])[:6]
    return f"{len(state)} tensors; most under " + ", ".join(f"{p}. ({n})" for p, n in top)


def is_v_prediction(state: Mapping[str, Any]) -> bool:
    """ComfyUI's test for SD2 768-v files: a `v_pred` key, or the spread of the last output
    block's first transformer norm bias (v models were trained on; the 512 eps base is flat)."""
    if "v_pred" in state:
        return True
    blocks = {int(k.split(".")[3]) for k in state if k.startswith(UNET_PREFIX + "output_blocks.")}
    if not blocks:
        return False
    value = state.get(f"{UNET_PREFIX}output_blocks.{max(blocks)}.1.transformer_blocks.0.norm1.bias")
    if value is None or getattr(value, "is_meta", False):
        return False
    import torch

    return float(torch.std(value.float(), unbiased=False)) > 0.09


def recognise(state: Mapping[str, Any]) -> Recognised | None:
    """The Stable Diffusion family of an original-layout checkpoint, or None. A `v_pred` key
    (as in v-prediction SDXL fine-tunes) makes any family predict v."""
    found = _recognise(state)
    if found is not None and "v_pred" in state and found.family.prediction_type != "v_prediction":
        family = replace(found.family, prediction_type="v_prediction")
        return replace(found, family=family, evidence=(*found.evidence, "a v_pred key"))
    return found


def _recognise(state: Mapping[str, Any]) -> Recognised | None:
    conv_in = shape(state, UNET_PREFIX + "input_blocks.0.0.weight")
    if conv_in is None:
        return None
    inpaint = conv_in[1] == 9
    has_adm = UNET_PREFIX + "label_emb.0.0.weight" in state
    evidence = [f"UNet input_blocks.0 takes {conv_in[1]} channels"]
    if has_adm and any(k.startswith(SDXL_G) for k in state):
        evidence.append("two text encoders (CLIP-L and OpenCLIP-G) and size embeddings")
        family = sd.SDXL_INPAINT if inpaint else sd.SDXL
        return Recognised(family, tuple(evidence), (SDXL_L, SDXL_G))
    if has_adm and any(k.startswith(REFINER_G) for k in state):
        evidence.append("one OpenCLIP-G text encoder and aesthetic-score embeddings")
        return Recognised(sd.SDXL_REFINER, tuple(evidence), (REFINER_G,))
    if has_adm:
        evidence.append("size embeddings (label_emb) but no text encoder")
        family = sd.SDXL_INPAINT if inpaint else sd.SDXL
        return Recognised(family, tuple(evidence), ())
    if any(k.startswith(SD2_CLIP) for k in state):
        evidence.append("an OpenCLIP-H text encoder")
        if inpaint:
            return Recognised(sd.SD2_INPAINT, tuple(evidence), (SD2_CLIP,))
        if is_v_prediction(state):
            evidence.append("v-prediction (v_pred key or trained output norm)")
            return Recognised(sd.SD2_V, tuple(evidence), (SD2_CLIP,))
        return Recognised(sd.SD2, tuple(evidence), (SD2_CLIP,))
    if any(k.startswith(SD1_CLIP) for k in state):
        evidence.append("a CLIP-L text encoder")
        return Recognised(sd.SD1_INPAINT if inpaint else sd.SD1, tuple(evidence), (SD1_CLIP,))
    width = context_dim(state)
    evidence.append(f"no text encoder; cross-attention width {width}")
    if width == 1024:
        return Recognised(sd.SD2_INPAINT if inpaint else sd.SD2, tuple(evidence), ())
    return Recognised(sd.SD1_INPAINT if inpaint else sd.SD1, tuple(evidence), ())
