"""Disk cache codecs for the built-in value kinds: tensors and dicts of tensors, PIL images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from easel.core.diskcache import Codec


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and type(value).__name__ == "Tensor"


def _is_tensors(value: Any) -> bool:
    if _is_tensor(value):
        return True
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) for k in value)
        and all(v is None or _is_tensor(v) for v in value.values())
        and any(_is_tensor(v) for v in value.values())
    )


def _write_tensors(value: Any, path: Path) -> None:
    from safetensors.torch import save_file

    if _is_tensor(value):
        tensors, meta = {"value": value}, {"kind": "tensor"}
    else:
        tensors = {k: v for k, v in value.items() if v is not None}
        meta = {"kind": "dict", "none": json.dumps([k for k, v in value.items() if v is None])}
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata=meta
    )


def _read_tensors(path: Path) -> Any:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    if meta.get("kind") == "tensor":
        return tensors["value"]
    out: dict[str, Any] = dict(tensors)
    for key in json.loads(meta.get("none", "[]")):
        out[key] = None
    return out


def _is_pil(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "getbands")


def _write_png(value: Any, path: Path) -> None:
    value.save(path, format="PNG")


def _read_png(path: Path) -> Any:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image.copy()


# Registered by the built-in plugin's register_cache_codecs hook (easel/nodes/plugin.py).
CODECS = (
    Codec("tensors", ".safetensors", _is_tensors, _write_tensors, _read_tensors),
    Codec("png", ".png", _is_pil, _write_png, _read_png),
)
