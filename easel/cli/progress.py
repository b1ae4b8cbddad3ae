"""Turns run events into progress bars on a terminal, or plain lines otherwise."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from easel.core import events as ev
from easel.core.events import Event


class ProgressPrinter:
    """An event handler for the CLI: one bar per long node on a TTY, one line per node else."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.total = 0
        self.done = 0
        self.bar: Any = None

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        kind = event.type
        label = f"{event.node_id} ({event.node_type})" if event.node_id else ""
        if kind == ev.RUN_STARTED:
            self.total = int(event.data.get("total", 0))
        elif kind == ev.NODE_STARTED:
            self.line(f"[{self.done + 1}/{self.total}] {label} running")
        elif kind == ev.NODE_PROGRESS:
            self.progress(label, int(event.data["step"]), int(event.data["total"]))
        elif kind in (ev.NODE_FINISHED, ev.NODE_CACHED):
            self.close_bar()
            self.done += 1
            if kind == ev.NODE_CACHED:
                self.line(f"[{self.done}/{self.total}] {label} cached")
            else:
                self.line(
                    f"[{self.done}/{self.total}] {label} done in "
                    f"{event.data.get('seconds', 0):.2f}s"
                )
        elif kind == ev.NODE_FAILED:
            self.close_bar()
            self.done += 1
            self.line(f"[{self.done}/{self.total}] {label} FAILED: {event.data.get('message')}")
        elif kind == ev.NODE_SKIPPED:
            self.done += 1
            self.line(f"[{self.done}/{self.total}] {label} skipped: {event.data.get('reason')}")
        elif kind == ev.NODE_WARNING:
            self.line(f"warning: {label}: {event.data.get('message')}")
        elif kind == ev.RUN_FINISHED:
            self.close_bar()
            self.line(
                f"run {event.data.get('status')} in {event.data.get('seconds', 0):.2f}s "
                f"({event.data.get('executed')} executed, {event.data.get('cached')} cached)"
            )
        elif kind == ev.RUN_CANCELLED:
            self.close_bar()
            self.line("run cancelled")

    def progress(self, label: str, step: int, total: int) -> None:
        if not self.tty:
            if step == total or step == 1 or step % max(1, total // 4) == 0:
                self.line(f"    {label}: step {step}/{total}")
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, desc=label, file=self.stream, leave=False, dynamic_ncols=True
            )
        self.bar.update(step - self.bar.n)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)
