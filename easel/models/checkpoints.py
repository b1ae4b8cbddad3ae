"""Turning loaded checkpoint modules into the handles nodes pass along (MODEL, CLIP, VAE),
with the family the registry gave."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from easel.models import loading
from easel.models.errors import ModelError
from easel.models.families.base import Family, TextPart
from easel.models.families.registry import folder_family, text_part
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle

# diffusers folder component -> text part key, in the order of a family's parts
TEXT_COMPONENTS = (("text_encoder", "tokenizer", "l"), ("text_encoder_2", "tokenizer_2", "g"))


def handles(
    name: str,
    manager: Any,
    family: Family,
    unet: Any,
    sched: dict[str, Any],
    vae: Any,
    parts: list[TextEncoderPart],
) -> tuple[ModelHandle, ClipHandle | None, VaeHandle]:
    vae_handle = VaeHandle(name, vae, manager)
    model = ModelHandle(
        name, unet, sched, vae_handle.scale_factor, manager, vae=vae_handle, family=family
    )
    clip = ClipHandle(name, tuple(parts), manager, family=family) if parts else None
    return model, clip, vae_handle


def with_tokenizer_pad(tokenizer: Any, part: TextPart) -> Any:
    """The tokenizer padding as the family's part expects (SDXL's bigG and SD 2 pad with "!")."""
    if tokenizer.pad_token == part.pad_token or part.pad_token not in tokenizer.get_vocab():
        return tokenizer
    import copy

    padded = copy.deepcopy(tokenizer)  # the fast tokenizer's padding lives in its backend
    padded.pad_token = part.pad_token
    return padded


def folder_checkpoint(
    name: str, folder: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle | None, VaeHandle]:
    """A diffusers pipeline folder (model_index.json), SD 1.x/2.x/XL or the demo model."""
    index = loading.model_index(folder) if (folder / "model_index.json").is_file() else {}
    vae_name = "vae" if "vae" in index or (folder / "vae").is_dir() else "movq"
    vae = manager.module(
        folder / vae_name,
        *index.get(vae_name, manager.class_of(folder / vae_name, "AutoencoderKL")),
    )
    unet = manager.module(
        folder / "unet", *index.get("unet", ("diffusers", "UNet2DConditionModel"))
    )
    sched = loading.scheduler_config(folder / "scheduler")
    towers = []
    for component, tokenizer_name, key in TEXT_COMPONENTS:
        if (folder / component).is_dir():
            default = "CLIPTextModelWithProjection" if component.endswith("_2") else "CLIPTextModel"
            model = manager.module(
                folder / component, *index.get(component, ("transformers", default))
            )
            tokenizer = manager.module(
                folder / tokenizer_name,
                *index.get(tokenizer_name, ("transformers", "CLIPTokenizer")),
            )
            towers.append((key, model, tokenizer))
    keys = tuple(key for key, _, _ in towers)
    if keys == ("l",):
        keys = ("",)
    family = folder_family(
        unet.config, scheduler_config=sched, vae_config=vae.config, text_parts=keys
    )
    parts = []
    for (_, model, tokenizer), key in zip(towers, keys, strict=True):
        spec = text_part(family, key)
        parts.append(
            TextEncoderPart(
                key,
                with_tokenizer_pad(tokenizer, spec),
                model,
                layer=spec.layer,
                layer_norm=spec.layer_norm,
                pooled=spec.pooled,
            )
        )
    return handles(name, manager, family, unet, sched, vae, parts)


def decoder_checkpoint(
    name: str, folder: Path, has_clip: bool, manager: Any
) -> tuple[ModelHandle, ClipHandle | None, VaeHandle]:
    """`<bundle>/decoder`: an unCLIP decoder with the bundle's VAE (and CLIP, if it has one)."""
    index = loading.model_index(folder) if (folder / "model_index.json").is_file() else {}
    vae_name = "vae" if "vae" in index or (folder / "vae").is_dir() else "movq"
    vae = manager.module(
        folder / vae_name,
        *index.get(vae_name, manager.class_of(folder / vae_name, "AutoencoderKL")),
    )
    unet = manager.module(
        folder / "decoder", *manager.class_of(folder / "decoder", "UNet2DConditionModel")
    )
    sched_dir = next(
        (
            folder / d
            for d in ("decoder_scheduler", "decoder", "scheduler")
            if (folder / d / "scheduler_config.json").is_file()
        ),
        folder,
    )
    sched = loading.scheduler_config(sched_dir)
    family = folder_family(unet.config, scheduler_config=sched, vae_config=vae.config)
    model, _, vae_handle = handles(name, manager, family, unet, sched, vae, [])
    clip = manager.load_clip(name.removesuffix("/decoder")) if has_clip else None
    return model, clip, vae_handle


def single_file_checkpoint(
    name: str, path: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle | None, VaeHandle]:
    """An original-layout single file, with nothing beside it."""
    from easel.models.single_file import load_parts
    from easel.models.state_dicts import read_state_dict

    def tokenizer_for(part: TextPart) -> Any:
        return with_tokenizer_pad(manager.clip_tokenizer(path, part.pad_token), part)

    def load() -> Any:
        state = read_state_dict(path, manager.allow_unsafe_pickle)
        return load_parts(path, state, manager.dtype, tokenizer_for)

    loaded = manager.single_file_parts(path, load)
    if loaded.vae is None:
        raise ModelError(f"{path.name} has no VAE: load one with VAELoader")
    parts = [
        TextEncoderPart(
            spec.key,
            tokenizer_for(spec),
            model,
            layer=spec.layer,
            layer_norm=spec.layer_norm,
            pooled=spec.pooled,
        )
        for spec, model in loaded.text
    ]
    return handles(
        name, manager, loaded.family, loaded.unet, dict(loaded.scheduler_config), loaded.vae, parts
    )


def legacy_single_file(
    name: str, parts: dict[str, Any], manager: Any
) -> tuple[ModelHandle, ClipHandle | None, VaeHandle]:
    """A single file with a `<name>.config/` diffusers folder beside it (Easel's old rule)."""
    unet, vae = parts["unet"].eval(), parts["vae"].eval()
    sched = dict(parts["scheduler"].config)
    towers = []
    if parts.get("text_encoder") is not None:
        towers.append(("", parts["text_encoder"], parts["tokenizer"]))
    family = folder_family(unet.config, scheduler_config=sched, vae_config=vae.config)
    text = [
        TextEncoderPart(
            key,
            tok,
            model,
            layer=text_part(family, key).layer,
            layer_norm=text_part(family, key).layer_norm,
        )
        for key, model, tok in towers
    ]
    return handles(name, manager, family, unet, sched, vae, text)
