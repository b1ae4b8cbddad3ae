"""Text utilities that ComfyUI's templates use: concatenate, replace, regex replace, and a
preview of any value as text (comfy_extras/nodes_string.py, nodes_preview_any.py)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from easel.core.node import Input, NodeError, node
from easel.core.types import ANY, Socket

AnyValue = Annotated[Any, Socket(ANY)]
# User-written patterns run on user text: a pattern that backtracks without end (ReDoS) is
# stopped by the `regex` module's timeout (Python's `re` has none; `regex` is already
# installed with transformers), and sizes are bounded before anything runs.
REGEX_TIMEOUT_S = 2.0
MAX_TEXT = 1_000_000
MAX_PATTERN = 10_000


@node(category="text", outputs={"text": str})
def ConcatenateText(
    a: str = Input("", multiline=True),
    b: str = Input("", multiline=True),
    delimiter: str = "",
) -> str:
    """`a`, the delimiter, then `b` (ComfyUI's StringConcatenate)."""
    return delimiter.join((a, b))


@node(category="text", outputs={"text": str})
def ReplaceText(
    text: str = Input("", multiline=True),
    find: str = Input("", multiline=True),
    replace: str = Input("", multiline=True),
) -> str:
    """Every occurrence of `find` replaced by `replace`, literally (ComfyUI's StringReplace)."""
    return text.replace(find, replace)


@node(category="text", outputs={"text": str})
def RegexReplace(
    text: str = Input("", multiline=True),
    pattern: str = Input("", multiline=True),
    replace: str = Input("", multiline=True),
    case_insensitive: bool = True,
    multiline: bool = False,
    dotall: bool = False,
    count: int = Input(0, ge=0, le=100),
) -> str:
    """Replace the matches of a regular expression (Python syntax; `\\1` in `replace` is the
    first group); `count` 0 replaces all (ComfyUI's RegexReplace). A pattern that runs longer
    than 2 s is stopped with an error."""
    import regex

    if len(pattern) > MAX_PATTERN:
        raise NodeError(f"the pattern is {len(pattern):,} characters, over {MAX_PATTERN:,}",
                        "pattern")
    if len(text) > MAX_TEXT:
        raise NodeError(f"the text is {len(text):,} characters, over {MAX_TEXT:,}", "text")
    flags = ((regex.IGNORECASE if case_insensitive else 0)
             | (regex.MULTILINE if multiline else 0) | (regex.DOTALL if dotall else 0))
    try:
        compiled = regex.compile(pattern, flags)
    except regex.error as exc:
        raise NodeError(f"not a valid regular expression: {exc}", "pattern") from None
    try:
        return str(compiled.sub(replace, text, count=count, timeout=REGEX_TIMEOUT_S))
    except TimeoutError:
        raise NodeError(f"the pattern ran longer than {REGEX_TIMEOUT_S:g} s on this text "
                        "(it backtracks too much): simplify it", "pattern") from None
    except (regex.error, IndexError) as exc:
        raise NodeError(f"the replacement does not fit the pattern: {exc}", "replace") from None


def as_text(value: Any) -> str:
    """A value as ComfyUI's PreviewAny shows it: text as is, numbers and booleans with str(),
    JSON (indented) where it serialises, else str()."""
    if value is None:
        return "None"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | bool):
        return str(value)
    try:
        return json.dumps(value, indent=4)
    except (TypeError, ValueError):
        return str(value)


@node(category="text", outputs={"text": str}, output_node=True)
def PreviewAsText(source: AnyValue) -> dict[str, Any]:
    """Show any value as text in the run's results (ComfyUI's PreviewAny), and pass that text
    on."""
    text = as_text(source)
    return {"text": text, "ui": {"text": [text]}}


NODES = [ConcatenateText, ReplaceText, RegexReplace, PreviewAsText]
