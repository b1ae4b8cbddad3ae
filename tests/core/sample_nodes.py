"""Small node types for engine tests; `CALLS` counts executions per node type."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Literal

import numpy as np

import easel
from easel.core.context import Context
from easel.core.node import NodeError
from easel.core.plugins import Registry, load_plugins

CALLS: Counter[str] = Counter()
_lock = threading.Lock()


def count(name: str) -> None:
    with _lock:
        CALLS[name] += 1


@easel.node(category="test", outputs={"value": float})
def Const(value: float = 1.0) -> float:
    count("Const")
    return value


@easel.node(category="test", outputs={"sum": float})
def Add(a: float, b: float = easel.Input(0.0, ge=-1000, le=1000)) -> float:
    count("Add")
    return a + b


@easel.node(category="test", outputs={"value": float})
def Slow(
    ctx: Context,
    value: float = 0.0,
    steps: int = easel.Input(5, ge=1, le=1000),
    delay: float = 0.01,
) -> float:
    count("Slow")
    for step in range(1, steps + 1):
        time.sleep(delay)
        ctx.progress(step, steps)
    return value


@easel.node(category="test", outputs={"value": float})
def Fail(value: float = 0.0, message: str = "boom") -> float:
    count("Fail")
    if value < 0:
        raise NodeError(message, "value")
    raise RuntimeError(message)


@easel.node(category="test", outputs={"array": "IMAGE"})
def Noise(seed: int = easel.Input(0, ge=0), size: int = 64) -> object:
    count("Noise")
    return np.random.default_rng(seed).random((size, size), dtype=np.float32)


@easel.node(category="test", outputs={"value": float})
def Mean(array: easel.socket_type("IMAGE")) -> float:  # type: ignore[valid-type]
    count("Mean")
    return float(np.asarray(array).mean())


@easel.node(category="test", output_node=True, outputs={})
def Show(value: float, label: str = easel.Input("", multiline=True)) -> dict:
    count("Show")
    return {"ui": {"value": value, "label": label}}


@easel.node(category="test", outputs={"value": float}, deterministic=False)
def Clock() -> float:
    count("Clock")
    return time.time()


@easel.node(category="test", outputs={"text": str})
def Pick(mode: Literal["a", "b"] = "a", text: str | None = None) -> str:
    count("Pick")
    return f"{mode}:{text}"


NODES = [Const, Add, Slow, Fail, Noise, Mean, Show, Clock, Pick]


def registry() -> Registry:
    reg = load_plugins(entry_points=False, environ={})
    for node_type in NODES:
        reg.add_node("tests", node_type)
    return reg


def workflow(nodes: dict) -> dict:
    return {"format": "easel.workflow", "version": 1, "nodes": nodes}
