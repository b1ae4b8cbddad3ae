"""The optional on-disk node output cache: one manifest and one file per output, by key.

Values are written by codecs: JSON for plain data here; plugins add theirs through the
`register_cache_codecs` hook (the built-in nodes add tensors and images). An entry with a
value no codec takes is not stored.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("easel.cache")


@dataclass(frozen=True)
class Codec:
    """How one kind of value goes to a file and back."""

    name: str
    suffix: str
    matches: Callable[[Any], bool]
    write: Callable[[Any, Path], None]
    read: Callable[[Path], Any]


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _write_json(value: Any, path: Path) -> None:
    path.write_text(json.dumps(value))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


# Always available; plugins add theirs with the register_cache_codecs hook (the built-in
# plugin adds tensors and images), and the registry hands the list to the DiskStore.
JSON_CODEC = Codec("json", ".json", _is_plain, _write_json, _read_json)


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("easel")) / "outputs"


class DiskStore:
    """Node outputs on disk under `root`, shared by every process that points there.

    `codecs` are tried in order (first match writes); pass `registry.codecs`.
    """

    def __init__(self, root: Path | None = None, codecs: Sequence[Codec] = (JSON_CODEC,)) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.codecs = list(codecs)

    def _manifest(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.manifest.json"

    def get(self, key: str) -> dict[str, Any] | None:
        manifest = self._manifest(key)
        try:
            entries = json.loads(manifest.read_text())
        except (OSError, ValueError):
            return None
        by_name = {codec.name: codec for codec in self.codecs}
        outputs: dict[str, Any] = {}
        try:
            for name, entry in entries.items():
                codec = by_name[entry["codec"]]
                outputs[name] = codec.read(manifest.parent / entry["file"])
        except Exception as exc:  # a damaged entry is a miss, not a failure
            log.warning("disk cache entry %s unreadable (%s); ignoring it", key, exc)
            return None
        return outputs

    def put(self, key: str, outputs: dict[str, Any]) -> bool:
        chosen: dict[str, Codec] = {}
        for name, value in outputs.items():
            codec = next((c for c in self.codecs if c.matches(value)), None)
            if codec is None:
                return False  # e.g. a model handle: only memory can hold it
            chosen[name] = codec
        folder = self.root / key[:2]
        folder.mkdir(parents=True, exist_ok=True)
        entries = {}
        try:
            for index, (name, codec) in enumerate(chosen.items()):
                filename = f"{key}.{index}{codec.suffix}"
                _atomic(folder / filename, functools.partial(_write_with, codec, outputs[name]))
                entries[name] = {"codec": codec.name, "file": filename}
            _atomic(self._manifest(key), functools.partial(_write_json, entries))
        except Exception as exc:
            log.warning("could not write disk cache entry %s: %s", key, exc)
            return False
        return True


def _write_with(codec: Codec, value: Any, path: Path) -> None:
    codec.write(value, path)


def _atomic(target: Path, write: Callable[[Path], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
