"""Nodes written as a careless (or hostile) plugin author would: they exit the process, hang,
ignore cancellation, leak memory, return a `ui` that is not JSON, and put server paths in
their errors. A plugin file: `easel serve --plugin tests/server/badnodes.py`.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from easel.core.context import Context
from easel.core.node import Input, node
from easel.core.plugins import hookimpl

_LEAKED: list[bytearray] = []


@node(category="testing", outputs={}, output_node=True, deterministic=False)
def BadExit(code: int = Input(3, ge=0, le=255)) -> None:
    """Ends the process at once, as a C extension's abort would."""
    os._exit(code)


@node(category="testing", outputs={}, output_node=True, deterministic=False)
def BadSystemExit(how: str = Input("exit", choices=["exit", "interrupt"])) -> None:
    """Raises SystemExit or KeyboardInterrupt, which `except Exception` does not catch."""
    if how == "interrupt":
        raise KeyboardInterrupt
    raise SystemExit(4)


@node(category="testing", outputs={}, output_node=True, deterministic=False)
def BadHang(seconds: float = Input(600.0, ge=0, le=3600)) -> dict[str, Any]:
    """Sleeps without ever reporting progress: a cancel cannot reach it cooperatively."""
    time.sleep(seconds)
    return {"ui": {"slept": seconds}}


@node(category="testing", outputs={}, output_node=True, deterministic=False)
def BadLeak(megabytes: int = Input(64, ge=1, le=4096), die: bool = False) -> dict[str, Any]:
    """Keeps `megabytes` more memory on every run; with `die`, then gets killed the way the
    kernel's out-of-memory killer kills (SIGKILL)."""
    _LEAKED.append(bytearray(megabytes * 1024 * 1024))
    if die:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"ui": {"leaked_mb": sum(len(b) for b in _LEAKED) // (1024 * 1024), "pid": os.getpid()}}


@node(category="testing", outputs={}, output_node=True, deterministic=False)
def BadUi() -> dict[str, Any]:
    """Returns a `ui` that JSON cannot encode."""
    return {"ui": {"thing": object()}}


@node(category="testing", outputs={}, output_node=True, deterministic=False)
def BadPath(ctx: Context) -> None:
    """Fails with a message holding absolute server paths."""
    where = Path(ctx.services["input_dir"]) / "missing.png"
    raise FileNotFoundError(f"cannot open {where} (cwd {Path.cwd()}, home {Path.home()})")


@node(category="testing", outputs={}, output_node=True, deterministic=False)
def WorkerPid() -> dict[str, Any]:
    """Which process runs the nodes."""
    return {"ui": {"pid": os.getpid()}}


NODES = [BadExit, BadSystemExit, BadHang, BadLeak, BadUi, BadPath, WorkerPid]


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    for node_type in NODES:
        register(node_type)
