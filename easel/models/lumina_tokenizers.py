"""Finds the Qwen3 (Z-Image) and Gemma 2 (Lumina 2) tokenizers on this machine, never
downloading, as easel.models.tokenizers finds CLIP's and T5's. A text encoder file holds
weights only; places are tried in this order, and every one is named when none has it:

1. a tokenizer folder the user configured ($EASEL_QWEN3_TOKENIZER / $EASEL_GEMMA_TOKENIZER, or
   `[tokenizers] qwen3 = "..."` / `gemma = "..."` in the config file, as for Flux.2 Klein);
2. a ComfyUI install the models roots point into: `comfy/text_encoders/qwen25_tokenizer/`
   (ComfyUI encodes Z-Image's prompts with it: Qwen2.5 and Qwen3 share the vocabulary);
   Gemma: `comfy/text_encoders/gemma_tokenizer/` where an install has one;
3. diffusers and transformers folders in the models roots (`tokenizer/`, ...);
4. the Hugging Face cache already on disk (known repositories first).

A candidate is a folder whose tokenizer_config.json names a Qwen2 / Gemma tokenizer class.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from easel.models import model_paths, tokenizers
from easel.models.errors import ModelError

# kind -> (config family name, tokenizer class prefix, ComfyUI folders, hub repositories)
SOURCES: dict[str, tuple[str, str, tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "qwen3": (
        "qwen3",
        "Qwen2Tokenizer",
        ("qwen25_tokenizer", "qwen3_tokenizer"),
        (("Tongyi-MAI/Z-Image-Turbo", "tokenizer/"), ("Qwen/Qwen3-4B", "")),
    ),
    "gemma2": (
        "gemma",
        "Gemma",
        ("gemma_tokenizer", "gemma2_tokenizer"),
        (("Alpha-VLLM/Lumina-Image-2.0", "tokenizer/"), ("google/gemma-2-2b", "")),
    ),
}


def accepts(kind: str, folder: Path) -> bool:
    """A folder holding a tokenizer of `kind`'s class (tokenizer_config.json says which)."""
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return False
    try:
        cls = str(json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class", ""))
    except (OSError, ValueError):
        return False
    return cls.startswith(SOURCES[kind][1])


def _candidates(
    kind: str, roots: list[Path], environ: Mapping[str, str]
) -> Iterator[tuple[str, Path]]:
    family, _, comfy_folders, known = SOURCES[kind]
    configured = model_paths.configured_tokenizer(family, environ)
    if configured is not None:
        yield "the configured tokenizer folder", configured
        yield "the configured tokenizer folder", configured / "tokenizer"
    for install in model_paths.comfyui_installs(roots):
        for name in comfy_folders:
            yield "a ComfyUI install", install / "comfy" / "text_encoders" / name
    for folder in tokenizers._model_folders(roots):
        yield "a model folder in the models roots", folder
    cache = tokenizers.hub_cache_dir(environ)
    for folder in tokenizers._hub_folders(cache, known, "tokenizer_config.json"):
        yield "the Hugging Face cache", folder


def find(
    kind: str, roots: list[Path] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Path | None, list[str]]:
    """(folder or None, the places looked in) of `kind`'s tokenizer."""
    from easel.models import discovery

    env = os.environ if environ is None else environ
    root_list = discovery.model_roots(env) if roots is None else [Path(r) for r in roots]
    looked: list[str] = []
    seen: set[Path] = set()
    for where, folder in _candidates(kind, root_list, env):
        if folder in seen:
            continue
        seen.add(folder)
        if accepts(kind, folder):
            return folder, looked
        named = where in ("the configured tokenizer folder", "a ComfyUI install")
        if named or (where == "a model folder in the models roots" and folder.is_dir()):
            looked.append(f"{where}: {folder}" + ("" if folder.is_dir() else " (missing)"))
    looked.append(f"the Hugging Face cache: {tokenizers.hub_cache_dir(env)}")
    return None, looked


def tokenizer(
    kind: str,
    *,
    checkpoint: str = "",
    roots: list[Path] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Any:
    """The tokenizer of a "qwen3" or "gemma2" text encoder; ModelError naming every place
    looked in when there is none."""
    from transformers import AutoTokenizer

    folder, looked = find(kind, roots, environ)
    if folder is None:
        family = SOURCES[kind][0]
        what = "Qwen (Qwen2Tokenizer)" if kind == "qwen3" else "Gemma (GemmaTokenizer)"
        raise ModelError(
            f"{checkpoint or 'the text encoder'} holds no tokenizer, and a {what} tokenizer "
            "was not found on this machine (Easel never downloads). Looked in: "
            + "; ".join(looked)
            + ". To fix: point Easel at a ComfyUI install (--models-dir /path/to/ComfyUI), put "
            "the model's diffusers folder (with tokenizer/) in the models folder, or name a "
            f"tokenizer folder with EASEL_{family.upper()}_TOKENIZER or [tokenizers] {family} "
            "in the config file."
        )
    loaded = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    loaded.padding_side = "right"  # as Lumina2Pipeline sets it; Z-Image drops the padding
    return loaded
