"""Lotus's fixed conditioning (ComfyUI's LotusConditioning): what Stable Diffusion 2's frozen
text encoder (OpenCLIP ViT-H, penultimate layer, final layer norm) makes of the empty prompt,
unpadded: the hidden states of its two tokens, start and end of text, [1, 2, 1024].

Lotus was fine-tuned from SD 2 with that encoder frozen and an empty prompt, so the
conditioning is a constant of the model. ComfyUI ships the numbers inlined in its source;
Easel computes them from the encoder itself, found in the user's models: the CLIP handed to
the node, else the text tower of the first Stable Diffusion 2.x checkpoint in `checkpoints/`
(only that tower is read from a single file). The result is cached per encoder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.handles import ClipHandle, TextEncoderPart

NO_ENCODER = (
    "Lotus is conditioned on Stable Diffusion 2's text encoder's reading of the empty prompt, "
    "and Easel computes it from that encoder: put a Stable Diffusion 2.x checkpoint (e.g. "
    "v2-1_768-ema-pruned.safetensors) in checkpoints/, or connect a CLIP of one"
)


def is_sd2_checkpoint(path: Path) -> bool:
    """Whether a checkpoint (single safetensors file or diffusers folder) is a Stable
    Diffusion 2.x one with its text encoder, from its header or configs alone."""
    from easel.models.families.recognise import SD2_CLIP, UNET_PREFIX
    from easel.models.family_files import header

    if path.is_file():
        keys = header(path) or {}
        return UNET_PREFIX + "input_blocks.0.0.weight" in keys and any(
            k.startswith(SD2_CLIP + "transformer.resblocks.") for k in keys
        )
    unet_config = path / "unet" / "config.json"
    if not (path / "text_encoder" / "config.json").is_file() or not unet_config.is_file():
        return False
    try:
        config = json.loads(unet_config.read_text())
    except (OSError, ValueError):
        return False
    from easel.models.families.registry import folder_family

    return folder_family(config).name.startswith("sd2")


def sd2_checkpoint(manager: Any) -> str | None:
    """The name of the first Stable Diffusion 2.x checkpoint the manager can see."""
    for name in sorted(manager.names("checkpoints")):
        try:
            path = manager.resolve("checkpoints", name)
        except ModelError:
            continue
        if is_sd2_checkpoint(path):
            return str(name)
    return None


def sd2_clip(name: str, manager: Any) -> ClipHandle:
    """CLIP of checkpoint `name`: a single file's OpenCLIP-H tower alone, or a folder's."""
    from easel.models.checkpoints import with_tokenizer_pad
    from easel.models.families import sd
    from easel.models.families.recognise import SD2_CLIP

    path = manager.resolve("checkpoints", name)
    if not path.is_file():
        clip = manager.load_checkpoint(name)[1]
        if clip is None:
            raise ModelError(f"checkpoint {name} has no text encoder")
        return clip  # type: ignore[no-any-return]
    part = sd.OPEN_CLIP_H
    tokenizer = with_tokenizer_pad(manager.clip_tokenizer(path, part.pad_token), part)

    def load() -> Any:
        from safetensors import safe_open

        from easel.models.single_file import build_open_clip, token_ids

        with safe_open(str(path), framework="pt") as handle:
            names = [k for k in handle.keys() if k.startswith(SD2_CLIP)]  # noqa: SIM118
            state = {k: handle.get_tensor(k) for k in names}
        return build_open_clip(state, SD2_CLIP, part, manager.dtype, token_ids(tokenizer))

    model = manager.load_module((str(path.resolve()), "sd2-text-encoder"), load)
    tower = TextEncoderPart("", tokenizer, model, layer=part.layer, layer_norm=part.layer_norm)
    return ClipHandle(name, (tower,), manager, family=sd.SD2)


def empty_prompt_embedding(clip: Any) -> Any:
    """[1, 2, D] float32: the hidden states of the empty prompt's start and end tokens, at the
    layer (and with the final norm) `clip`'s tower is configured for, as TextEncode reads it."""
    from easel.models.text import _Item, _run_chunk, place

    parts: tuple[Any, ...] = tuple(getattr(clip, "parts", ()))
    if len(parts) != 1 or getattr(parts[0], "kind", "clip") != "clip":
        raise ValueError(
            "Lotus takes Stable Diffusion 2's text encoder (one CLIP tower); this CLIP has "
            f"{len(parts)} tower(s)"
        )
    part = parts[0]
    tokenizer = part.tokenizer
    place(clip)
    items = [_Item(int(tokenizer.bos_token_id)), _Item(int(tokenizer.eos_token_id))]
    hidden, _, _ = _run_chunk(clip, part, items)
    return hidden


def lotus_conditioning(clip: Any) -> dict[str, Any]:
    """LotusConditioning's CONDITIONING from `clip` (cached on the handle)."""
    cache = getattr(clip, "empty_cache", None)
    key = "lotus"
    if cache is not None and key in cache:
        embeds = cache[key]
    else:
        embeds = empty_prompt_embedding(clip)
        if cache is not None:
            cache[key] = embeds
    return {"embeds": embeds.clone(), "pooled": None}
