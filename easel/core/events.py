"""Events a run emits; the CLI draws progress bars from them, the server streams them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RUN_STARTED = "run_started"
NODE_STARTED = "node_started"
NODE_PROGRESS = "node_progress"
NODE_CACHED = "node_cached"
NODE_FINISHED = "node_finished"
NODE_FAILED = "node_failed"
NODE_SKIPPED = "node_skipped"
NODE_WARNING = "node_warning"
RUN_FINISHED = "run_finished"
RUN_CANCELLED = "run_cancelled"

# Plugins add their own types ("plugin.event") with the register_event_types hook.


@dataclass
class Event:
    """One thing that happened in a run. `data` is JSON-able except a progress `preview`."""

    type: str
    run_id: str
    node_id: str | None = None
    node_type: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.data.items() if k != "preview"}
        out: dict[str, Any] = {"type": self.type, "run_id": self.run_id, "time": self.time}
        if self.node_id is not None:
            out["node"] = self.node_id
            out["node_type"] = self.node_type
        out.update(data)
        return out


EventHandler = Callable[[Event], None]
