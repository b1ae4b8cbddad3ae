"""Finds the Qwen2 tokenizer (Qwen2.5-VL's) on this machine, never downloading.

ComfyUI's qwen_2.5_vl_7b files hold weights only. Places tried, in order, every one named in the
error when none has it (as easel.models.tokenizers does for CLIP and T5):

1. a folder the user configured ($EASEL_QWEN_TOKENIZER, or `[tokenizers] qwen` in the config);
2. a ComfyUI install the models roots point into (`comfy/text_encoders/qwen25_tokenizer/`, the
   copy ComfyUI ships);
3. diffusers and transformers folders in the models roots (`tokenizer/`, ...);
4. the Hugging Face cache already on disk (Qwen-Image and Qwen2.5-VL repositories first).

A candidate is a byte-level BPE folder (vocab.json + merges.txt) whose tokenizer_config.json
names a Qwen2 tokenizer and that knows Qwen's chat tokens (<|im_start|>, <|image_pad|>).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from easel.models import discovery, model_paths
from easel.models.errors import ModelError
from easel.models.tokenizers import _hub_folders, _model_folders, hub_cache_dir

COMFY_FOLDER = Path("comfy") / "text_encoders" / "qwen25_tokenizer"
HUB_FILES = (
    ("Qwen/Qwen-Image", "tokenizer/"),
    ("Qwen/Qwen-Image-Edit", "tokenizer/"),
    ("Qwen/Qwen-Image-Edit-2509", "tokenizer/"),
    ("Qwen/Qwen2.5-VL-7B-Instruct", ""),
)
REQUIRED_TOKENS = ("<|im_start|>", "<|image_pad|>")


def is_qwen_folder(folder: Path) -> bool:
    """A folder holding a Qwen2 BPE tokenizer with Qwen's chat and vision tokens."""
    config_file = folder / "tokenizer_config.json"
    if not (folder / "vocab.json").is_file() or not (folder / "merges.txt").is_file():
        return False
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not str(config.get("tokenizer_class", "")).startswith("Qwen2"):
        return False
    added = {str(v.get("content")) for v in (config.get("added_tokens_decoder") or {}).values()}
    return all(token in added for token in REQUIRED_TOKENS)


def _candidates(roots: list[Path], environ: Mapping[str, str]) -> Iterator[tuple[str, Path]]:
    configured = model_paths.configured_tokenizer("qwen", environ)
    if configured is not None:
        yield "the configured tokenizer folder", configured
        yield "the configured tokenizer folder", configured / "tokenizer"
    for install in model_paths.comfyui_installs(roots):
        yield "a ComfyUI install", install / COMFY_FOLDER
    for folder in _model_folders(roots):
        yield "a model folder in the models roots", folder
    for folder in _hub_folders(hub_cache_dir(environ), HUB_FILES, "tokenizer_config.json"):
        yield "the Hugging Face cache", folder


def find_qwen_tokenizer(
    roots: list[Path] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Path | None, list[str]]:
    """(the folder or None, the places looked in)."""
    env = os.environ if environ is None else environ
    root_list = discovery.model_roots(env) if roots is None else [Path(r) for r in roots]
    looked: list[str] = []
    seen: set[Path] = set()
    for where, folder in _candidates(root_list, env):
        if folder in seen:
            continue
        seen.add(folder)
        if is_qwen_folder(folder):
            return folder, looked
        if where in ("the configured tokenizer folder", "a ComfyUI install"):
            looked.append(f"{where}: {folder}" + ("" if folder.is_dir() else " (missing)"))
    looked.append(f"the Hugging Face cache: {hub_cache_dir(env)}")
    looked.append("the models roots: " + ", ".join(str(r) for r in root_list))
    return None, looked


def qwen_tokenizer(
    *,
    checkpoint: str | None = None,
    roots: list[Path] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Any:
    """transformers' Qwen2Tokenizer from the first folder found."""
    from transformers import Qwen2Tokenizer

    folder, looked = find_qwen_tokenizer(roots, environ)
    if folder is None:
        head = f"{checkpoint} holds no tokenizer" if checkpoint else "Qwen2.5-VL needs a tokenizer"
        raise ModelError(
            f"{head}, and the Qwen2 tokenizer was not found on this machine (Easel never "
            "downloads). Looked in: " + "; ".join(looked) + ". To fix: point Easel at a "
            "ComfyUI install (it ships comfy/text_encoders/qwen25_tokenizer), put a diffusers "
            "Qwen-Image folder in the models folder, or name a tokenizer folder with "
            "EASEL_QWEN_TOKENIZER or [tokenizers] qwen in the config file."
        )
    return Qwen2Tokenizer.from_pretrained(str(folder), local_files_only=True)
