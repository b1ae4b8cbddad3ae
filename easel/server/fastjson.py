"""JSON for big bodies and run records: orjson when it is installed, else the standard library.

The server parses and stores workflows of tens of thousands of nodes; both libraries hold the
interpreter while they work, so the faster one keeps the event loop's pauses short. Results
are the same JSON; anything orjson refuses to write (text with lone surrogates, integers over
64 bits) is written by the standard library instead.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is optional
    orjson = None  # type: ignore[assignment]


def loads(data: bytes | str) -> Any:
    """Parse JSON; errors are the standard library's (ValueError, RecursionError)."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # let the standard library say what is wrong, in its words
    return json.loads(data)


def dumps(value: Any, default: Any = None) -> str:
    """JSON text."""
    if orjson is not None:
        try:
            return str(orjson.dumps(value, default=default).decode("utf-8"))
        except (TypeError, orjson.JSONEncodeError):
            pass
    return json.dumps(value, default=default)
