"""Validated plans of workflows submitted again, kept so an identical submission is neither
validated nor pickled a second time (a fully cached re-run's fixed cost through the server).

Only plans whose validation reads nothing outside the workflow are kept: every node type in
them has fixed choices (no list of discovered files, which can change between submissions)
and no `check` hook (which may read anything). Everything else is validated on every
submission, as before. The key is the submitted workflow's JSON as it came (before any
conversion), so a changed value, seed included, is a new key.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

from easel.core.graph import Plan
from easel.core.node import NodeType
from easel.server import fastjson

KEPT = 4


def pure(node_type: NodeType) -> bool:
    """Whether validating a node of this type depends only on the workflow."""
    if node_type.check is not None:
        return False
    return not any(callable(spec.info.choices) for spec in node_type.inputs.values())


class PlanMemo:
    """The last `kept` pure plans: key -> (Easel workflow, plan bytes)."""

    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self._plans: OrderedDict[bytes, tuple[dict[str, Any], bytes]] = OrderedDict()
        self._pure: dict[str, bool] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(submitted: Any) -> bytes | None:
        try:
            text = fastjson.dumps(submitted)
        except (TypeError, ValueError):
            return None
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def get(self, key: bytes | None) -> tuple[dict[str, Any], bytes] | None:
        if key is None:
            return None
        with self._lock:
            found = self._plans.get(key)
            if found is not None:
                self._plans.move_to_end(key)
            return found

    def put(self, key: bytes | None, workflow: dict[str, Any], plan: Plan, data: bytes) -> None:
        """Keep `data` for `key` when every node type of `plan` is pure."""
        if key is None or self.kept <= 0:
            return
        types = {planned.node_type.type: planned.node_type for planned in plan.nodes.values()}
        for name, node_type in types.items():
            if name not in self._pure:
                self._pure[name] = pure(node_type)
            if not self._pure[name]:
                return
        with self._lock:
            self._plans[key] = (workflow, data)
            while len(self._plans) > self.kept:
                self._plans.popitem(last=False)
