"""Text utilities that ComfyUI's templates use: concatenate, replace, regex replace and
extract, length, and a preview of any value as text (comfy_extras/nodes_string.py,
nodes_preview_any.py)."""

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


def _compile(pattern: str, text: str, case_insensitive: bool, multiline: bool, dotall: bool) -> Any:
    """The compiled pattern, after the size checks (NodeErrors name the input)."""
    import regex

    if len(pattern) > MAX_PATTERN:
        raise NodeError(
            f"the pattern is {len(pattern):,} characters, over {MAX_PATTERN:,}", "regex_pattern"
        )
    if len(text) > MAX_TEXT:
        raise NodeError(f"the text is {len(text):,} characters, over {MAX_TEXT:,}", "string")
    flags = (
        (regex.IGNORECASE if case_insensitive else 0)
        | (regex.MULTILINE if multiline else 0)
        | (regex.DOTALL if dotall else 0)
    )
    try:
        return regex.compile(pattern, flags)
    except regex.error as exc:
        raise NodeError(f"not a valid regular expression: {exc}", "regex_pattern") from None


def _too_slow() -> NodeError:
    return NodeError(
        f"the pattern ran longer than {REGEX_TIMEOUT_S:g} s on this text (it "
        "backtracks too much): simplify it",
        "regex_pattern",
    )


@node(category="text", outputs={"text": str})
def RegexReplace(
    string: str = Input("", multiline=True),
    regex_pattern: str = Input("", multiline=True),
    replace: str = Input("", multiline=True),
    case_insensitive: bool = True,
    multiline: bool = False,
    dotall: bool = False,
    count: int = Input(0, ge=0, le=100),
) -> str:
    """Replace the matches of a regular expression (Python syntax; `\\1` in `replace` is the
    first group) in `string`; `count` 0 replaces all (ComfyUI's RegexReplace, with its input
    names). A pattern that runs longer than 2 s is stopped with an error."""
    import regex

    compiled = _compile(regex_pattern, string, case_insensitive, multiline, dotall)
    try:
        return str(compiled.sub(replace, string, count=count, timeout=REGEX_TIMEOUT_S))
    except TimeoutError:
        raise _too_slow() from None
    except (regex.error, IndexError) as exc:
        raise NodeError(f"the replacement does not fit the pattern: {exc}", "replace") from None


EXTRACT_MODES = ["First Match", "All Matches", "First Group", "All Groups"]


@node(category="text", outputs={"text": str})
def RegexExtract(
    string: str = Input("", multiline=True),
    regex_pattern: str = Input("", multiline=True),
    mode: str = Input("First Match", choices=EXTRACT_MODES),
    case_insensitive: bool = True,
    multiline: bool = False,
    dotall: bool = False,
    group_index: int = Input(1, ge=0, le=100),
) -> str:
    """The first match, all matches (one per line), group `group_index` of the first match,
    or that group of every match (one per line); "" when nothing matches (ComfyUI's
    RegexExtract). Patterns run with the same 2 s limit as RegexReplace."""
    compiled = _compile(regex_pattern, string, case_insensitive, multiline, dotall)
    try:
        if mode == "First Match":
            found = compiled.search(string, timeout=REGEX_TIMEOUT_S)
            return found.group(0) if found else ""
        if mode == "All Matches":  # as Python's findall: group 1 when the pattern has groups
            index = 1 if compiled.groups else 0
            return "\n".join(
                m.group(index) or "" for m in compiled.finditer(string, timeout=REGEX_TIMEOUT_S)
            )
        matches = list(compiled.finditer(string, timeout=REGEX_TIMEOUT_S))
        if mode == "First Group":
            matches = matches[:1]
        groups = [m.group(group_index) or "" for m in matches if len(m.groups()) >= group_index]
        return "\n".join(groups) if mode == "All Groups" else (groups[0] if groups else "")
    except TimeoutError:
        raise _too_slow() from None


@node(category="text", outputs={"length": int})
def TextLength(text: str = Input("", multiline=True)) -> int:
    """The number of characters (ComfyUI's StringLength)."""
    return len(text)


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


NODES = [ConcatenateText, ReplaceText, RegexReplace, RegexExtract, TextLength, PreviewAsText]
