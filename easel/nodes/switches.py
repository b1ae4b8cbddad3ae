"""Booleans and the switch that picks one of two branches (ComfyUI's PrimitiveBoolean and
ComfySwitchNode): only the chosen branch runs."""

from __future__ import annotations

from typing import Annotated, Any

from easel.core.context import Context
from easel.core.node import Input, InputInfo, NodeError, node
from easel.core.types import ANY, Socket

AnyValue = Annotated[Any, Socket(ANY)]
# Declared once here: ruff's B008 cannot tell that Input() in a default is declarative.
ON_FALSE, ON_TRUE = Input(None, lazy=True), Input(None, lazy=True)


@node(category="values", outputs={"value": bool})
def Boolean(value: bool = False) -> bool:
    """A true/false constant to link into several inputs at once."""
    return value


def _branch(ctx: Context, inputs: dict[str, Any]) -> list[str]:
    """The branch the switch reads; the other one never runs. With one branch linked, that
    one (as ComfyUI). Linked lazy inputs are in `inputs` (as None until computed)."""
    linked: list[str] = [name for name in ("on_false", "on_true") if name in inputs]
    if len(linked) == 1:
        return linked
    return ["on_true" if inputs.get("switch") else "on_false"]


@node(category="values", outputs={"output": AnyValue}, needs=_branch)
def Switch(
    switch: bool = False,
    on_false: AnyValue = ON_FALSE,
    on_true: AnyValue = ON_TRUE,
) -> Any:
    """`on_true` when `switch` is true, else `on_false`; only that branch is computed
    (ComfyUI's ComfySwitchNode). With only one branch linked, its value passes whatever
    `switch` says."""
    # An unlinked lazy input keeps its declared default (the Input(...) object): not a value.
    on_true, on_false = (None if isinstance(v, InputInfo) else v for v in (on_true, on_false))
    chosen = on_true if switch else on_false
    if chosen is None:
        chosen = on_false if switch else on_true
    if chosen is None:
        raise NodeError("link on_true or on_false", "on_true" if switch else "on_false")
    return chosen


NODES = [Boolean, Switch]
