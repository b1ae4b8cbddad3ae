"""Fast test nodes for the server tests: progress with previews, files, failures, uploads.

Also a plugin file: `easel serve --plugin tests/server/testnodes.py` registers them.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.plugins import hookimpl
from easel.pngmeta import png_info


@node(category="testing", outputs={"value": int})
def TestSlow(
    ctx: Context,
    value: int = 1,
    steps: int = Input(3, ge=1, le=1000),
    delay: float = Input(0.0, ge=0, le=5),
) -> int:
    """Counts `steps` steps, sleeping `delay` seconds each, with a preview per step."""
    for step in range(1, steps + 1):
        time.sleep(delay)
        shade = int(255 * step / steps)
        ctx.progress(step, steps, Image.new("RGB", (16, 16), (shade, 40, 90)))
    return value


@node(category="testing", outputs={}, output_node=True)
def TestSave(ctx: Context, value: int, prefix: str = "test") -> dict[str, Any]:
    """Writes a small PNG (atomically) with the running workflow embedded in it."""
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    name = f"{prefix}_{ctx.run_id[:8]}_{value}.png"
    info = png_info(ctx.services.get("workflow"))
    handle, temp = tempfile.mkstemp(dir=ctx.output_dir, prefix=".", suffix=".part")
    with os.fdopen(handle, "wb") as out:
        Image.new("RGB", (24, 24), (value % 256, 120, 200)).save(out, "PNG", pnginfo=info)
    os.replace(temp, ctx.output_dir / name)
    return {"ui": {"files": [name]}}


@node(category="testing", outputs={}, output_node=True)
def TestEcho(value: int = 0) -> dict[str, Any]:
    """An output node that returns its value at once."""
    return {"ui": {"value": value}}


@node(category="testing", outputs={}, output_node=True)
def TestFail(value: int = 0) -> None:
    """Always fails, naming its input."""
    raise NodeError(f"refusing value {value}", "value")


@node(category="testing", outputs={}, output_node=True)
def TestLoad(ctx: Context, image: str = Input(widget="image_upload")) -> dict[str, Any]:
    """Reads an uploaded image from the server's input folder."""
    path = Path(ctx.services["input_dir"]) / image
    with Image.open(path) as img:
        return {"ui": {"size": list(img.size)}}


NODES = [TestSlow, TestSave, TestEcho, TestFail, TestLoad]


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    for node_type in NODES:
        register(node_type)
