"""Reads model files: diffusers folders by their model_index, single-file checkpoints with a
local config, and the parts of an Easel bundle; never reaches the network."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from easel.models.discovery import CONFIG_SUFFIX, PICKLE_SUFFIXES
from easel.models.errors import ModelError, UnsafePickleError

ALLOWED_LIBRARIES = ("diffusers", "transformers")
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from None


def pipeline_class(folder: Path) -> str:
    """The `_class_name` of a diffusers folder's `model_index.json` ("" without one)."""
    index = folder / "model_index.json"
    return str(read_json(index).get("_class_name", "")) if index.is_file() else ""


def model_index(folder: Path) -> dict[str, tuple[str, str]]:
    """Component name -> (library, class) from a diffusers `model_index.json`."""
    index = read_json(folder / "model_index.json")
    parts = {}
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or len(value) != 2:
            continue
        if value[0] is None or value[1] is None:
            continue
        parts[name] = (str(value[0]), str(value[1]))
    return parts


def resolve_class(library: str, class_name: str) -> Any:
    if library not in ALLOWED_LIBRARIES:
        raise ModelError(
            f"component class {library}.{class_name} is not from diffusers or "
            "transformers; Easel does not run custom pipeline code"
        )
    try:
        return getattr(importlib.import_module(library), class_name)
    except AttributeError:
        raise ModelError(f"{library} has no class {class_name}; is it too old?") from None


def use_safetensors(folder: Path, allow_pickle: bool) -> bool | None:
    """What to pass as `use_safetensors`, refusing a folder that holds only pickle weights."""
    weights = (
        [p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES] if folder.is_dir() else []
    )
    if any(p.suffix == ".safetensors" for p in weights):
        return True
    pickles = [p for p in weights if p.suffix in PICKLE_SUFFIXES]
    if pickles and not allow_pickle:
        raise UnsafePickleError(pickles[0])
    return None if allow_pickle else True


def quiet_libraries() -> None:
    """Silence the libraries' own progress bars: Easel reports loading through its events."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def load_module(folder: Path, library: str, class_name: str, dtype: Any, allow_pickle: bool) -> Any:
    """One diffusers or transformers module (or tokenizer) from a local folder."""
    quiet_libraries()
    cls = resolve_class(library, class_name)
    if not folder.is_dir():
        raise ModelError(f"missing folder {folder}")
    kwargs: dict[str, Any] = {"local_files_only": True}
    if class_name.endswith(("Tokenizer", "TokenizerFast", "Processor")):
        return cls.from_pretrained(str(folder), **kwargs)
    kwargs["use_safetensors"] = use_safetensors(folder, allow_pickle)
    kwargs["dtype" if library == "transformers" else "torch_dtype"] = dtype
    try:
        module = cls.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load {class_name} from {folder}: {exc}") from exc
    return module.eval().requires_grad_(False)


def scheduler_config(folder: Path) -> dict[str, Any]:
    """A scheduler config from `folder/scheduler_config.json` (or an empty one)."""
    file = folder / "scheduler_config.json"
    return read_json(file) if file.is_file() else {}


def load_single_file(path: Path, dtype: Any, allow_pickle: bool) -> dict[str, Any]:
    """The components of a single-file checkpoint with an Easel 0.1 `<name>.config/` diffusers
    config folder beside it (files without one load through easel.models.single_file)."""
    if path.suffix in PICKLE_SUFFIXES and not allow_pickle:
        raise UnsafePickleError(path)
    quiet_libraries()
    config_dir = path.with_name(path.stem + CONFIG_SUFFIX)
    index = read_json(config_dir / "model_index.json")
    pipeline_class = resolve_class(
        "diffusers", str(index.get("_class_name", "StableDiffusionPipeline"))
    )
    try:
        pipe = pipeline_class.from_single_file(
            str(path), config=str(config_dir), local_files_only=True, torch_dtype=dtype
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"cannot load {path.name} as {pipeline_class.__name__}: {exc}") from exc
    return dict(pipe.components)
