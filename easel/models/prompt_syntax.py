"""Prompt syntax as ComfyUI reads it: `(text:1.2)` weights, `(text)` = x1.1, nested brackets
multiply, `\\(` `\\)` escapes, and `embedding:name` references.

Hand-written because no maintained library reads ComfyUI's dialect: `compel` parses
`(text)1.1`/`text++` and A1111-style `[text]` down-weighting and applies weights by scaling
embeddings (not ComfyUI's interpolation towards the empty prompt); `sd_embed` follows A1111
(`[text]` = /1.1, weights normalised by the mean). ComfyUI's own rules, matched here (its
`comfy/sd1_clip.py`, `token_weights`/`parse_parentheses`/`_try_get_embedding`):

- A top-level `( ... )` group multiplies the weight by 1.1; when the text inside ends in
  `:<number>` (the colon not first), that number *replaces* the weight instead.
- `[text]` is not special: the brackets are tokenised as text.
- An unbalanced `)` disables grouping for the rest of its level (ComfyUI's counter goes
  negative); an unclosed `(` is kept as text.
- `embedding:name` is recognised at the start of a weighted piece or after whitespace; the name
  ends at whitespace, `<` or `[`. Trailing commas are retried without (`embedding:name,`).

Pure Python: no torch, no tokenizer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

EMBEDDING_PREFIX = "embedding:"
GROUP_WEIGHT = 1.1
_ESCAPED_OPEN, _ESCAPED_CLOSE = "\ue000", "\ue001"  # private-use stand-ins for \( and \)
_EMBEDDING_START = re.compile(r"(?<=\s)" + re.escape(EMBEDDING_PREFIX))
_NAME_END = re.compile(r"[<\[]")
_GLUED_EMBEDDING = re.compile(re.escape(EMBEDDING_PREFIX) + r"[^\s<\[]+")


@dataclass(frozen=True)
class Text:
    """Plain text to tokenise, with its weight."""

    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class Embedding:
    """An `embedding:name` reference, with its weight."""

    name: str
    weight: float = 1.0

    def candidates(self) -> list[tuple[str, str]]:
        """(name to look up, text left over) in the order ComfyUI tries them: the name as
        written, then without trailing commas (the commas then stay as text)."""
        found = [(self.name, "")]
        stripped = self.name.rstrip(",")
        if stripped and stripped != self.name:
            found.append((stripped, self.name[len(stripped) :]))
        return found


Piece = Text | Embedding


def _escape(text: str) -> str:
    return text.replace("\\)", _ESCAPED_CLOSE).replace("\\(", _ESCAPED_OPEN)


def _unescape(text: str) -> str:
    return text.replace(_ESCAPED_CLOSE, ")").replace(_ESCAPED_OPEN, "(")


def _top_level(text: str) -> list[str]:
    """Split `text` into top-level `( ... )` groups and the text between them."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(" and depth == 0:
            if current:
                parts.append("".join(current))
            current = ["("]
            depth = 1
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                current.append(")")
                parts.append("".join(current))
                current = []
                continue
        current.append(char)
    if current:
        parts.append("".join(current))
    return parts


def _explicit_weight(inner: str) -> tuple[str, float] | None:
    """(text, weight) when `inner` ends in `:<number>` with the colon not first."""
    colon = inner.rfind(":")
    if colon <= 0:
        return None
    try:
        weight = float(inner[colon + 1 :])
    except ValueError:
        return None
    if not math.isfinite(weight):  # ComfyUI would take nan/inf and ruin the whole image
        return None
    return inner[:colon], weight


def weighted_segments(text: str) -> list[Text]:
    """The prompt as (text, weight) segments, escapes resolved; empty segments dropped."""

    def visit(chunk: str, weight: float) -> list[Text]:
        out: list[Text] = []
        for part in _top_level(chunk):
            if len(part) >= 2 and part[0] == "(" and part[-1] == ")":
                inner = part[1:-1]
                explicit = _explicit_weight(inner)
                if explicit is None:
                    out += visit(inner, weight * GROUP_WEIGHT)
                else:
                    out += visit(explicit[0], explicit[1])
            else:
                out.append(Text(part, weight))
        return out

    return [Text(_unescape(seg.text), seg.weight) for seg in visit(_escape(text), 1.0) if seg.text]


def parse_prompt(text: str) -> list[Piece]:
    """The prompt as text and embedding pieces, each with its weight."""
    pieces: list[Piece] = []
    for segment in weighted_segments(text):
        parts = _EMBEDDING_START.split(segment.text)
        for index, part in enumerate(parts):
            if index == 0 and not part.startswith(EMBEDDING_PREFIX):
                if part:
                    pieces.append(Text(part, segment.weight))
                continue
            rest = part[len(EMBEDDING_PREFIX) :] if index == 0 else part
            words = rest.split()
            if not words:  # "embedding:" with no name: nothing to look up
                pieces.append(Text(EMBEDDING_PREFIX + rest, segment.weight))
                continue
            name, leftover = words[0], " ".join(words[1:])
            cut = _NAME_END.search(name)
            if cut is not None:
                leftover = name[cut.start() :] + (" " + leftover if leftover else "")
                name = name[: cut.start()]
            if name:
                pieces.append(Embedding(name, segment.weight))
            if leftover:
                pieces.append(Text(leftover, segment.weight))
    return pieces


def embedding_names(text: str) -> list[str]:
    """The embedding names a prompt refers to, in order, without repeats."""
    return list(dict.fromkeys(p.name for p in parse_prompt(text) if isinstance(p, Embedding)))


def glued_embeddings(text: str) -> list[str]:
    """`embedding:` references that ComfyUI reads as text because no whitespace precedes
    them (`red,embedding:foo`): worth a warning."""
    return [
        match.group(0)
        for piece in parse_prompt(text)
        if isinstance(piece, Text)
        for match in _GLUED_EMBEDDING.finditer(piece.text)
    ]
