"""Single-file Stable Diffusion checkpoints in the original key layout, with nothing beside them.

The registry recognises the family, `ldm_shapes` reads the network's size off its tensors, and
diffusers' single-file functions make the configs and convert the keys. Text towers become
transformers CLIP models; tokenizers are found on the machine (easel.models.tokenizers).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import ldm_shapes
from easel.models.families.base import Family, TextPart
from easel.models.families.recognise import Recognised, recognise, summarise

SCHEDULER_FILE = Path(__file__).resolve().parent / "families" / "configs" / "sd_scheduler.json"


@dataclass
class CheckpointParts:
    """What a checkpoint file gave: its family, modules and scheduler config."""

    family: Family
    unet: Any
    vae: Any | None
    text: list[tuple[TextPart, Any]]  # (the family's text part, its transformers model)
    scheduler_config: dict[str, Any]
    evidence: tuple[str, ...] = field(default=())


def scheduler_config(family: Family) -> dict[str, Any]:
    """The bundled noise schedule with the family's prediction type."""
    config = json.loads(SCHEDULER_FILE.read_text())
    config["prediction_type"] = family.prediction_type
    return config


def identify(state: Mapping[str, Any], path: Path) -> Recognised:
    """The family of `path`, honouring an A1111-style `<name>.yaml` that says v-prediction."""
    found = recognise(state)
    if found is None:
        raise ModelError(
            f"{path.name} is not a checkpoint Easel recognises ({summarise(state)}). "
            "Easel reads Stable Diffusion 1.x, 2.x and XL single files (UNet under "
            "model.diffusion_model.); put diffusion-model-only files in "
            "diffusion_models/, LoRAs in loras/, VAEs in vae/"
        )
    sidecar = path.with_suffix(".yaml")
    if sidecar.is_file() and re.search(
        r"parameterization:\s*['\"]?v['\"]?\s*$", sidecar.read_text(errors="replace"), re.MULTILINE
    ):
        family = replace(found.family, prediction_type="v_prediction")
        found = replace(
            found, family=family, evidence=(*found.evidence, f"{sidecar.name} says v-prediction")
        )
    return found


def build_unet(state: Mapping[str, Any], family: Family, dtype: Any) -> Any:
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        create_unet_diffusers_config_from_ldm,
    )

    original = ldm_shapes.original_config(state, family, has_vae=False)
    config = create_unet_diffusers_config_from_ldm(original, state)
    params = original["model"]["params"]["unet_config"]["params"]
    if family.is_sdxl:
        time_ids = 5 if family.added_cond == "sdxl_refiner" else 6
        pooled = params["adm_in_channels"] - time_ids * 256
        config.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            class_embed_type=None,
            projection_class_embeddings_input_dim=params["adm_in_channels"],
        )
        if pooled <= 0:
            raise ModelError(
                f"size embedding width {params['adm_in_channels']} is too small for SDXL"
            )
    if family.prediction_type == "v_prediction":
        config["upcast_attention"] = True  # as SD 2.x 768-v is configured in diffusers
    converted = convert_ldm_unet_checkpoint(state, config)
    return load(UNet2DConditionModel, config, converted, dtype, "UNet")


def build_vae(state: Mapping[str, Any], family: Family, dtype: Any) -> Any:
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import (
        convert_ldm_vae_checkpoint,
        create_vae_diffusers_config_from_ldm,
    )

    original = ldm_shapes.original_config(state, family)
    config = create_vae_diffusers_config_from_ldm(original, state)
    config["norm_num_groups"] = ldm_shapes.vae_norm_groups(state)
    converted = convert_ldm_vae_checkpoint(state, config)
    return load(AutoencoderKL, config, converted, dtype, "VAE")


def _count(state: Mapping[str, Any], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for key in state if (m := regex.match(key))})


def clip_config(
    state: Mapping[str, Any],
    part: TextPart,
    *,
    token: str,
    position: str,
    layers: str,
    fc1: str,
    tokens: dict[str, int],
    projection: int | None,
) -> Any:
    """A transformers CLIPTextConfig read off the tower's shapes (heads of 64 channels, as in
    every CLIP text tower; activation from the family)."""
    from transformers import CLIPTextConfig

    vocab, hidden = (int(n) for n in state[token].shape)
    first_fc1 = next(k for k in state if re.match(fc1, k))
    return CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=int(state[first_fc1].shape[0]),
        num_hidden_layers=_count(state, layers),
        num_attention_heads=max(1, hidden // 64),
        max_position_embeddings=int(state[position].shape[0]),
        hidden_act=part.hidden_act,
        projection_dim=projection or hidden,
        bos_token_id=tokens["bos_token_id"],
        eos_token_id=tokens["eos_token_id"],
        pad_token_id=tokens["pad_token_id"],
    )


def build_clip_l(
    state: Mapping[str, Any], prefix: str, part: TextPart, dtype: Any, tokens: dict[str, int]
) -> Any:
    """An OpenAI CLIP-L tower (SD 1.x; SDXL's first): transformers keys under `prefix`."""
    from transformers import CLIPTextModel

    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    sub = {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in sub.items()}
    p = "text_model."
    config = clip_config(
        sub,
        part,
        token=p + "embeddings.token_embedding.weight",
        position=p + "embeddings.position_embedding.weight",
        layers=re.escape(p) + r"encoder\.layers\.(\d+)\.",
        fc1=re.escape(p) + r"encoder\.layers\.\d+\.mlp\.fc1\.weight",
        tokens=tokens,
        projection=None,
    )
    return load(CLIPTextModel, config, sub, dtype, "CLIP-L text encoder", strict=False)


def build_open_clip(
    state: Mapping[str, Any], prefix: str, part: TextPart, dtype: Any, tokens: dict[str, int]
) -> Any:
    """An OpenCLIP tower (SD 2.x's ViT-H; SDXL's bigG, with its projection), all layers kept."""
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    # diffusers drops SD 2's last layer by full key name; a neutral prefix keeps every layer,
    # so that the family's "penultimate layer" and CLIPSetLastLayer count as in ComfyUI.
    sub = {"te." + k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    projection_key = "te.text_projection"
    projection = int(sub[projection_key].shape[1]) if projection_key in sub else None
    config = clip_config(
        sub,
        part,
        token="te.token_embedding.weight",
        position="te.positional_embedding",
        layers=r"te\.transformer\.resblocks\.(\d+)\.",
        fc1=r"te\.transformer\.resblocks\.\d+\.mlp\.c_fc\.weight",
        tokens=tokens,
        projection=projection,
    )
    cls = CLIPTextModelWithProjection if part.pooled else CLIPTextModel

    class _Shape:  # convert_open_clip_checkpoint reads only config.hidden_size
        def __init__(self, hidden: int) -> None:
            self.config = type("C", (), {"hidden_size": hidden})()

    converted = convert_open_clip_checkpoint(_Shape(config.hidden_size), sub, prefix="te.")
    if not part.pooled:
        converted.pop("text_projection.weight", None)
    return load(cls, config, converted, dtype, "OpenCLIP text encoder", strict=False)


def load(
    cls: Any, config: Any, state: dict[str, Any], dtype: Any, what: str, strict: bool = True
) -> Any:
    from easel.models.state_dicts import load_into

    return load_into(cls, config, state, dtype, what, strict=strict)


def token_ids(tokenizer: Any) -> dict[str, int]:
    """bos/eos/pad ids for a CLIP config, from the tokenizer that will feed it (the pooled
    output is read at the first end-of-text token)."""
    eos = tokenizer.eos_token_id
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": eos,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
    }


def load_parts(
    path: Path, state: Mapping[str, Any], dtype: Any, tokenizer_for: Any
) -> CheckpointParts:
    """Every module of a recognised single file. `tokenizer_for(part)` gives each text part's
    tokenizer (its ids configure the tower)."""
    found = identify(state, path)
    family = found.family
    what = "UNet"
    try:
        unet = build_unet(state, family, dtype)
        what = "VAE"
        has_vae = any(k.startswith(ldm_shapes.VAE_PREFIXES) for k in state)
        vae = build_vae(state, family, dtype) if has_vae else None
        text: list[tuple[TextPart, Any]] = []
        for part, prefix in zip(family.text, found.text_prefixes, strict=False):
            what = "text encoder"
            tokens = token_ids(tokenizer_for(part))
            if prefix.endswith(".transformer."):
                model = build_clip_l(state, prefix, part, dtype, tokens)
            else:
                model = build_open_clip(state, prefix, part, dtype, tokens)
            text.append((part, model))
    except ModelError as exc:
        raise ModelError(f"{path.name} ({family.label}): {exc}") from None
    except (
        RuntimeError,
        ValueError,
        KeyError,
        IndexError,
        AssertionError,
        ZeroDivisionError,
    ) as exc:
        raise ModelError(
            f"{path.name} looks like {family.label} ({'; '.join(found.evidence)}), but its "
            f"{what} does not fit that architecture ({type(exc).__name__}: {exc}). Is the "
            "file truncated or of an architecture Easel does not know?"
        ) from None
    return CheckpointParts(family, unet, vae, text, scheduler_config(family), found.evidence)
