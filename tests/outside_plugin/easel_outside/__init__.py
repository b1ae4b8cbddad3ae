"""Easel plugin "outside": stencils (a namespaced socket type), text tools and a report node,
using every feature docs/plugins.md documents."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

import easel
from easel.core.diskcache import Codec
from easel.core.types import Image

__version__ = "1.0.0"

Stencil = easel.socket_type("OUTSIDE.STENCIL")
EVENTS: list[Any] = []  # what the listener saw, for the tests


def is_stencil(value: Any) -> bool:
    return (
        isinstance(value, list)
        and all(isinstance(row, str) for row in value)
        and len({len(row) for row in value}) <= 1
    )


# -- nodes -------------------------------------------------------------------------------
@easel.node(
    category="outside/stencils", outputs={"stencil": Stencil}, display_name="Stencil from text"
)
def MakeStencil(
    ctx: easel.Context,
    pattern: str = easel.Input(
        "#.#\n.#.", multiline=True, max_length=4000, description="rows of # and ."
    ),
    repeat: int = easel.Input(1, ge=1, le=8, step=1),
) -> list[str]:
    """Rows of '#' (on) and '.' (off), tiled `repeat` times across."""
    rows = [row.strip() * repeat for row in pattern.splitlines() if row.strip()]
    if not rows or len({len(r) for r in rows}) != 1 or set("".join(rows)) - {"#", "."}:
        raise easel.NodeError("rows of equal length made of # and .", "pattern")
    for step, _ in enumerate(rows, start=1):
        ctx.progress(step, len(rows))
    ctx.emit("outside.stencil_made", rows=len(rows))
    return rows


@easel.node(category="outside/stencils", outputs={"stencil": Stencil})
def BrokenStencil() -> Any:
    """Returns the wrong kind of value: the output check blames this node."""
    return 42


@easel.node(category="outside/stencils", outputs={"image": Image})
def StencilImage(stencil: Stencil, scale: int = easel.Input(2, ge=1, le=16)) -> Any:
    """Draw a stencil as a black and white IMAGE."""
    import torch

    grid = torch.tensor([[1.0 if c == "#" else 0.0 for c in row] for row in stencil])
    big = grid.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    return big.expand(1, 3, *big.shape).clone()


def _file_digest(ctx: easel.Context, inputs: dict[str, Any]) -> str:
    path = Path(inputs["path"])
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def _path_exists(ctx: easel.Context, inputs: dict[str, Any]) -> list[tuple[str, str]]:
    path = Path(inputs["path"])
    return [] if path.is_file() else [("path", f"no such file: {path}")]


@easel.node(
    category="outside/text", outputs={"text": str}, fingerprint=_file_digest, check=_path_exists
)
def TextRead(path: str) -> str:
    """A text file's contents (relative paths: the working directory)."""
    return Path(path).read_text()


def _which(ctx: easel.Context, inputs: dict[str, Any]) -> list[str]:
    return ["when_long"] if len(inputs["text"]) > inputs["limit"] else ["when_short"]


@easel.node(category="outside/text", outputs={"text": str}, needs=_which)
def TextByLength(
    text: str,
    limit: int = easel.Input(10, ge=0),
    when_long: str = easel.Input("", lazy=True),
    when_short: str = easel.Input("", lazy=True),
) -> str:
    """Pick one of two texts by the length of another; only that branch runs."""
    return when_long if len(text) > limit else when_short


@easel.node(category="outside/text", outputs={"line": str}, list_outputs=["line"])
def TextSplitLines(text: str = easel.Input("", multiline=True)) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@easel.node(category="outside/text", outputs={"text": str})
def TextShout(
    text: str, style: Literal["upper", "title"] = "upper", suffix: str | None = None
) -> str:
    out = text.upper() if style == "upper" else text.title()
    return out + (suffix or "")


@easel.node(category="outside/text", outputs={"text": str, "count": int})
def TextJoinLines(
    lines: str = easel.Input("", as_list=True),
    separator: str = easel.Input(" / ", choices=[" / ", ", ", "\n"]),
) -> dict:
    return {"text": separator.join(lines), "count": len(lines)}


@easel.node(
    category="outside/text", outputs={"text": str, "salt": str}, output_depends={"text": ("text",)}
)
def TextSalted(text: str, salt: str = "pepper") -> dict:
    """Two outputs: `text` depends on `text` only, so a new salt re-runs nothing after it."""
    return {"text": text, "salt": f"{salt}:{text}"}


@easel.node(category="outside/text", outputs={"text": str}, deterministic=False)
def TextNonce() -> str:
    import uuid

    return uuid.uuid4().hex


@easel.node(
    category="outside/report",
    outputs={},
    output_node=True,
    hidden=["workflow", "extra_pnginfo", "node_id"],
    display_name="TextReport",
)
def TextReport(
    ctx: easel.Context,
    text: str,
    workflow: Any = None,
    extra_pnginfo: Any = None,
    node_id: str = "",
) -> dict:
    """Write the text and the workflow that made it into the output folder."""
    folder = ctx.output_dir / "outside"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"report-{node_id}.json"
    (folder / name).write_text(
        json.dumps({"text": text, "workflow": workflow, "extra": extra_pnginfo})
    )
    return {"ui": {"files": [f"outside/{name}"], "text": text}}


NODES = [
    MakeStencil,
    BrokenStencil,
    StencilImage,
    TextRead,
    TextByLength,
    TextSplitLines,
    TextShout,
    TextJoinLines,
    TextSalted,
    TextNonce,
    TextReport,
]


# -- routes ------------------------------------------------------------------------------
async def stencil_names(request: web.Request) -> web.Response:
    return web.json_response({"nodes": [n.type for n in NODES]})


async def echo_stencil(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"valid": is_stencil(body.get("stencil"))})


# -- hooks -------------------------------------------------------------------------------
@easel.hookimpl
def register_socket_types(register):
    register("OUTSIDE.STENCIL", "rows of '#' and '.'", check=is_stencil)


@easel.hookimpl
def register_nodes(register):
    for node_type in NODES:
        register(node_type)


@easel.hookimpl
def register_web_assets(register):
    register(Path(__file__).parent / "web")


@easel.hookimpl
def register_routes(register):
    register("GET", "/nodes", stencil_names)
    register("POST", "/check", echo_stencil)


@easel.hookimpl
def register_event_types(register):
    register("outside.stencil_made", "a stencil was made: {rows}")


@easel.hookimpl
def register_event_listeners(register):
    register(EVENTS.append)


@easel.hookimpl
def register_model_kinds(register):
    register("stencils", ["stencils"])


@easel.hookimpl
def register_cache_codecs(register):
    register(
        Codec(
            "outside-stencil",
            ".stencil",
            is_stencil,
            lambda value, path: path.write_text("\n".join(value)),
            lambda path: path.read_text().splitlines(),
        )
    )


@easel.hookimpl
def register_comfy_nodes(register):
    from easel.comfy.mapping import NodeMap

    register(
        "OutsideShout",
        NodeMap(
            "TextShout", {"text": "text", "style": "style"}, ("text",), widgets=("text", "style")
        ),
    )
