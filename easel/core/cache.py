"""Content-addressed node output cache: Merkle keys, an LRU bounded in bytes, optional disk."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KEY_SCHEMA = 1  # bump when the key encoding changes


def canonical(value: Any) -> bytes:
    """A stable byte encoding of JSON-like data (never Python's per-process `hash`)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_encode_other
    ).encode()


def _encode_other(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__bytes__": hashlib.sha256(value).hexdigest()}
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    raise TypeError(f"cannot make a cache key from {type(value).__name__}")


def node_key(
    node_type: str,
    version: int,
    literals: Mapping[str, Any],
    fingerprint: str | None,
    upstream: Mapping[str, tuple[str, str]],
    nonce: Any = None,
) -> str:
    """sha256 over (type, version, literal inputs, fingerprint, upstream keys and outputs);
    `nonce` is any JSON-able value that must also change the key (a run id, hidden inputs)."""
    payload = [
        KEY_SCHEMA,
        node_type,
        version,
        literals,
        fingerprint,
        {name: list(src) for name, src in upstream.items()},
        nonce,
    ]
    return hashlib.sha256(canonical(payload)).hexdigest()


@functools.singledispatch
def sizeof(value: Any) -> int:
    """Approximate bytes held by a cached value; register types with `sizeof.register`."""
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):  # numpy arrays and friends
        return nbytes
    if hasattr(value, "element_size") and hasattr(value, "nelement"):  # torch tensors
        return int(value.element_size() * value.nelement())
    if hasattr(value, "size") and hasattr(value, "mode") and hasattr(value, "getbands"):
        width, height = value.size  # PIL images
        return int(width * height * len(value.getbands()))
    return sys.getsizeof(value)


@sizeof.register(dict)
def _sizeof_dict(value: dict[Any, Any]) -> int:
    return sys.getsizeof(value) + sum(sizeof(v) for v in value.values())


@sizeof.register(list)
@sizeof.register(tuple)
def _sizeof_seq(value: list[Any] | tuple[Any, ...]) -> int:
    return sys.getsizeof(value) + sum(sizeof(v) for v in value)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    disk_hits: int = 0


class OutputCache:
    """Node outputs by key, least recently used first out, bounded in bytes; thread-safe.

    Entries bigger than the whole bound are not kept. With a `disk` store, entries also go
    to disk (when every value has a codec) and are found there by later processes.
    """

    def __init__(self, max_bytes: int = 2 * 1024**3, disk: Any = None) -> None:
        self.max_bytes = max_bytes
        self.disk = disk
        self.stats = CacheStats()
        self._entries: OrderedDict[str, tuple[dict[str, Any], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.stats.hits += 1
                return entry[0]
        if self.disk is not None:
            outputs = self.disk.get(key)
            if outputs is not None:
                self.stats.disk_hits += 1
                self.stats.hits += 1
                self._put_memory(key, outputs)
                return outputs
        with self._lock:
            self.stats.misses += 1
        return None

    def put(self, key: str, outputs: dict[str, Any]) -> None:
        self._put_memory(key, outputs)
        if self.disk is not None:
            self.disk.put(key, outputs)

    def _put_memory(self, key: str, outputs: dict[str, Any]) -> None:
        size = sizeof(outputs)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                return
            self._entries[key] = (outputs, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._entries:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
                self.stats.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
