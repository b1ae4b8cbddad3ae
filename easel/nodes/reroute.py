"""Reroute: a pass-through dot that tidies a link's path (ComfyUI's Reroute node)."""

from __future__ import annotations

from typing import Annotated, Any

from easel.core.node import node
from easel.core.types import ANY, Socket

AnyValue = Annotated[Any, Socket(ANY)]


@node(category="utils", outputs={"output": AnyValue})
def Reroute(input: AnyValue) -> Any:
    """Passes its input through unchanged: a point to bend a link around other nodes.
    It computes nothing, so the value is not copied and costs no cache memory of its own."""
    return input


NODES = [Reroute]
