"""What a running node may reach: progress, cancellation, output folder, logger, services."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Cancelled(Exception):
    """Raised inside a node when its run has been cancelled."""


class CancelToken:
    """A flag shared by a run and everything that runs for it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled(self.reason)


ProgressFn = Callable[[int, int, Any], None]


def _no_progress(step: int, total: int, preview: Any) -> None:
    return None


@dataclass
class Context:
    """Handed to a node's function as `ctx`; a node reaches nothing else of the host.

    `services` holds what the host provides (the model manager under "models",
    the upload folder under "input_dir", ...); plugins may add their own.
    """

    node_id: str = ""
    node_type: str = ""
    run_id: str = ""
    output_dir: Path = field(default_factory=lambda: Path("output"))
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("easel.node"))
    services: dict[str, Any] = field(default_factory=dict)
    cancel_token: CancelToken = field(default_factory=CancelToken)
    on_progress: ProgressFn = _no_progress
    on_warning: Callable[[str], None] | None = None
    on_event: Callable[[str, dict[str, Any]], None] | None = None

    def progress(self, step: int, total: int, preview: Any = None) -> None:
        """Report step `step` of `total` (optionally with a preview image); checks cancellation."""
        self.cancel_token.raise_if_cancelled()
        self.on_progress(step, total, preview)

    def check_cancelled(self) -> None:
        """Raise `Cancelled` if the run was cancelled: call it inside long loops."""
        self.cancel_token.raise_if_cancelled()

    @property
    def cancelled(self) -> bool:
        return self.cancel_token.cancelled

    def warn(self, message: str) -> None:
        """A warning the user should see (the CLI prints it, the server streams it)."""
        self.logger.warning("%s (%s): %s", self.node_id, self.node_type, message)
        if self.on_warning is not None:
            self.on_warning(message)

    def emit(self, event_type: str, **data: Any) -> None:
        """Send a custom event (a type a plugin registered with `register_event_types`) to
        whoever watches the run: the server streams it, plugin listeners receive it."""
        if self.on_event is not None:
            self.on_event(event_type, data)

    @property
    def models(self) -> Any:
        """The host's model manager."""
        try:
            return self.services["models"]
        except KeyError:
            raise RuntimeError("this host provides no model manager") from None

    def child(self, **changes: Any) -> Context:
        """A copy for another node of the same run."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values.update(changes)
        return Context(**values)
