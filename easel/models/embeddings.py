"""Textual-inversion embeddings: finding `embedding:name` in the models folder's `embeddings/`
kind, reading the file formats users have, and caching what was read per model manager.

Formats (each tensor `[vectors, width]`, or `[width]` for one vector):
- A1111 `.pt`/`.bin`: `{"string_to_param": {"*": tensor}, ...}` (pickle: only when the manager
  allows unsafe pickle);
- A1111 `.safetensors`: `{"emb_params": tensor}`;
- SDXL: `{"clip_l": tensor, "clip_g": tensor}`, each for its text encoder;
- diffusers' textual inversion (`learned_embeds.safetensors`/`.bin`): `{token: tensor}`.

Names are resolved as ComfyUI does: the name as written, then with `.safetensors`, `.pt`,
`.bin` appended, in the `embeddings/` folders, a bare file name also matching a file in a
sub-folder.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError, UnsafePickleError

KIND = "embeddings"
EXTENSIONS = (".safetensors", ".pt", ".bin")  # tried in this order after the name as written
PICKLE_EXTENSIONS = (".pt", ".bin", ".ckpt", ".pth")
# Which text encoder a key is for (SDXL files; ComfyUI also knows clip_h for SD2).
PART_KEYS = {"l": "clip_l", "g": "clip_g", "h": "clip_h"}
# Keys read first when a file holds several tensors of the wanted width.
PREFERRED_KEYS = ("*", "emb_params", "clip_l", "clip_g", "clip_h")


@dataclass(frozen=True)
class EmbeddingFile:
    """The vectors of one embedding file by key ("*" for A1111's string_to_param)."""

    path: Path
    vectors: dict[str, Any] = field(repr=False)

    @property
    def widths(self) -> list[int]:
        return sorted({int(t.shape[-1]) for t in self.vectors.values()})

    def for_encoder(self, width: int, part_key: str = "") -> Any:
        """The vectors `[n, width]` for a text encoder of `width` (its part key, "l"/"g",
        picks SDXL's tensor when present), or None when the file has none of that width."""
        wanted = PART_KEYS.get(part_key)
        if wanted in self.vectors and int(self.vectors[wanted].shape[-1]) == width:
            return self.vectors[wanted]
        keys = [k for k in PREFERRED_KEYS if k in self.vectors]
        keys += [k for k in self.vectors if k not in keys]
        for key in keys:
            if int(self.vectors[key].shape[-1]) == width:
                return self.vectors[key]
        return None


def _as_rows(value: Any) -> Any:
    import torch

    if not isinstance(value, torch.Tensor) or value.ndim == 0:
        return None
    value = value.detach().float().cpu()
    return value.reshape(1, -1) if value.ndim == 1 else value.reshape(-1, value.shape[-1])


def _read(path: Path, allow_pickle: bool) -> dict[str, Any]:
    if path.suffix.lower() in (".safetensors", ".sft"):
        from safetensors.torch import load_file

        return dict(load_file(str(path), device="cpu"))
    if not allow_pickle:
        raise UnsafePickleError(path)
    import pickle

    import torch

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Older A1111 files pickle more than tensors; the user allowed unsafe pickle.
        data = torch.load(str(path), map_location="cpu", weights_only=False)
    if not isinstance(data, dict):
        raise ModelError(f"{path} holds a {type(data).__name__}, not an embedding")
    return data


def load_embedding_file(path: Path, allow_pickle: bool = False) -> EmbeddingFile:
    """Read an embedding file in any of the formats above; ModelError when it holds none."""
    try:
        data = _read(path, allow_pickle)
    except ModelError:
        raise
    except Exception as exc:  # a damaged file: say which, and why
        raise ModelError(f"could not read embedding file {path}: {exc}") from exc
    vectors: dict[str, Any] = {}
    params = data.get("string_to_param")
    if isinstance(params, dict) and params:
        vectors["*"] = _as_rows(next(iter(params.values())))
    else:
        for key, value in data.items():
            rows = _as_rows(value)
            if rows is not None:
                vectors[str(key)] = rows
    vectors = {k: v for k, v in vectors.items() if v is not None and v.shape[0] > 0}
    if not vectors:
        raise ModelError(
            f"{path} holds no embedding vectors (expected string_to_param, "
            "emb_params, clip_l/clip_g or a {token: tensor} file)"
        )
    return EmbeddingFile(path, vectors)


# -- finding files ---------------------------------------------------------------------------
def _kind_folders(manager: Any) -> list[Path]:
    """The embeddings folders of the manager's roots, in order."""
    roots = [Path(r) for r in getattr(manager, "roots", None) or []]
    try:
        from easel.models import discovery

        folders = [f.path for f in discovery.kind_folders(KIND, roots)]
    except (ImportError, AttributeError, ModelError):
        folders = []
    return folders or [root / KIND for root in roots]


def looked_in(manager: Any) -> str:
    """Where embeddings are looked for, for messages."""
    folders = _kind_folders(manager)
    return ", ".join(str(f) for f in folders) or "no models folder"


def _inside(folder: Path, path: Path) -> bool:
    try:
        return os.path.commonpath([folder.resolve(), path.resolve()]) == str(folder.resolve())
    except ValueError:
        return False


def _listed_names(manager: Any) -> list[str] | None:
    """The manager's embedding names (None when it has no listing by kind)."""
    names, resolve = getattr(manager, "names", None), getattr(manager, "resolve", None)
    if not callable(names) or not callable(resolve):
        return None
    try:
        return sorted(names(KIND))
    except ModelError:
        return None


def find_embedding(manager: Any, name: str) -> Path | None:
    """The file `embedding:name` means, or None. The name is a path relative to an embeddings
    folder, with or without extension; a bare file name also matches in sub-folders."""
    wanted = name.replace("\\", "/").strip().lstrip("/")
    if not wanted:
        return None
    candidates = [wanted] + [wanted + ext for ext in EXTENSIONS]
    listed = _listed_names(manager)
    if listed is not None:  # the manager's models-folder listing (cached, no file opened)
        for candidate in candidates:
            if candidate in listed:
                return Path(manager.resolve(KIND, candidate))
        if "/" not in wanted:
            for candidate in candidates:
                for listed_name in listed:
                    if listed_name.rsplit("/", 1)[-1] == candidate:
                        return Path(manager.resolve(KIND, listed_name))
        return None
    for folder in _kind_folders(manager):
        if not folder.is_dir():
            continue
        for candidate in candidates:
            path = folder / candidate
            if path.is_file() and _inside(folder, path):
                return path
        if "/" in wanted:
            continue
        for root, dirs, files in sorted(os.walk(folder, followlinks=True)):
            dirs.sort()
            for candidate in candidates:
                if candidate in files:
                    return Path(root) / candidate
    return None


# -- cache per manager -----------------------------------------------------------------------
_caches: weakref.WeakKeyDictionary[Any, dict[tuple[str, int, int], EmbeddingFile]] = (
    weakref.WeakKeyDictionary()
)
_no_manager_cache: dict[tuple[str, int, int], EmbeddingFile] = {}
_lock = threading.Lock()


def _cache_for(manager: Any) -> dict[tuple[str, int, int], EmbeddingFile]:
    if manager is None:
        return _no_manager_cache
    try:
        return _caches.setdefault(manager, {})
    except TypeError:  # not weak-referenceable
        return _no_manager_cache


def load_embedding(manager: Any, path: Path) -> EmbeddingFile:
    """The embedding at `path`, read once per manager (again when the file changes)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _lock:
        cache = _cache_for(manager)
        found = cache.get(key)
        if found is None:
            allow = bool(getattr(manager, "allow_unsafe_pickle", False))
            found = load_embedding_file(path, allow)
            for old in [k for k in cache if k[0] == key[0]]:
                del cache[old]
            cache[key] = found
        return found


def fingerprint(manager: Any, names: list[str]) -> str:
    """Which files the names resolve to, with size and time: changes when one is added,
    replaced or removed, so a cached encoding is not reused."""
    parts = []
    for name in names:
        path = find_embedding(manager, name)
        if path is None:
            parts.append(f"{name}=missing")
        else:
            stat = path.stat()
            parts.append(f"{name}={path}:{stat.st_size}:{stat.st_mtime_ns}")
    return ";".join(parts)
