"""Text from structured values, as ComfyUI's templates build prompts: a key's value out of the
first JSON object in a text (JsonExtractString, e.g. on a language model's answer), and
Python format strings over linked values (StringFormat), both of comfy_extras/nodes_string.py.
"""

from __future__ import annotations

import json
import re
import string
from typing import Annotated, Any

from easel.core.node import Input, NodeError, node
from easel.core.types import ANY, Socket

AnyValue = Annotated[Any, Socket(ANY)]
LETTERS = "abcdefgh"
MAX_TEXT = 1_000_000
# A format spec's width or precision above this is refused: "{a:>999999999}" would allocate
# the whole padding before any size check could run.
MAX_FIELD_WIDTH = 10_000


@node(category="text", outputs={"text": str})
def ExtractJsonValue(
    json_string: str = Input("", multiline=True),
    key: str = "",
) -> str:
    """The value of `key` in the first valid JSON object found in `json_string` (text around
    it, such as a Markdown code fence, is skipped); "" when the key is missing or null, or no
    object parses. Non-text values are written as Python writes them (ComfyUI's
    JsonExtractString: `str(value)`)."""
    if len(json_string) > MAX_TEXT:
        raise NodeError(
            f"the text is {len(json_string):,} characters, over {MAX_TEXT:,}", "json_string"
        )
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", json_string):
        try:
            data, _ = decoder.raw_decode(json_string, match.start())
        except json.JSONDecodeError:
            continue
        value = data.get(key)
        return "" if value is None else str(value)
    return ""


class _Formatter(string.Formatter):
    """str.format limited to the named inputs: no attribute or item access (a format string
    is user text, and `{a.__class__...}` would reach into whatever object is linked), no
    nested fields, and bounded widths."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        if field_name not in LETTERS:
            raise NodeError(
                f"{{{field_name}}}: fields are the input names {', '.join(LETTERS)} "
                "(no attributes, indexes or positions)",
                "f_string",
            )
        if field_name not in kwargs:
            raise NodeError(
                f"{{{field_name}}} names input {field_name}, which is not linked", field_name
            )
        return kwargs[field_name], field_name

    def format_field(self, value: Any, format_spec: str) -> Any:
        widths = [int(n) for n in re.findall(r"\d+", format_spec)]
        if any(n > MAX_FIELD_WIDTH for n in widths):
            raise NodeError(
                f"the format spec {format_spec!r} asks for more than {MAX_FIELD_WIDTH:,} "
                "characters",
                "f_string",
            )
        try:
            return super().format_field(value, format_spec)
        except (ValueError, TypeError) as exc:
            raise NodeError(
                f"{format_spec!r} does not format a {type(value).__name__}: {exc}", "f_string"
            ) from None


@node(category="text", outputs={"text": str})
def FormatText(
    f_string: str = Input("{a}", multiline=True),
    a: AnyValue = None,
    b: AnyValue = None,
    c: AnyValue = None,
    d: AnyValue = None,
    e: AnyValue = None,
    f: AnyValue = None,
    g: AnyValue = None,
    h: AnyValue = None,
) -> str:
    """`f_string` with `{a}` ... `{h}` replaced by the linked inputs, with Python's format
    specs (`{a:.3f}`, `{b:>8}`) and `{{`/`}}` for literal braces (ComfyUI's StringFormat,
    Python's str.format). Attribute and index access (`{a.x}`, `{a[0]}`) are refused."""
    if len(f_string) > MAX_TEXT:
        raise NodeError(f"the text is {len(f_string):,} characters, over {MAX_TEXT:,}", "f_string")
    values = {
        name: value
        for name, value in zip(LETTERS, (a, b, c, d, e, f, g, h), strict=True)
        if value is not None
    }
    formatter = _Formatter()
    try:
        for _, field, spec, _ in formatter.parse(f_string):
            if spec and "{" in spec:
                raise NodeError(f"nested fields are not supported: {{{field}:{spec}}}", "f_string")
        return formatter.vformat(f_string, (), values)
    except ValueError as exc:  # unbalanced braces, a bad conversion
        raise NodeError(f"not a valid format string: {exc}", "f_string") from None


NODES = [ExtractJsonValue, FormatText]
