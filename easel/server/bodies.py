"""Reading request bodies within the size limits: JSON, raw bytes, one multipart file."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from easel.server import fastjson

CHUNK = 64 * 1024
OFF_LOOP_BYTES = 256 * 1024
MAX_DEPTH = 100
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class BodyError(web.HTTPException):
    """A request body refused: too large, not JSON, no file part."""

    def __init__(self, status: int, message: str) -> None:
        self.status_code = status
        super().__init__(text=json.dumps({"error": message}), content_type="application/json")


def too_large(limit: int) -> BodyError:
    return BodyError(413, f"request body too large (the limit is {limit // 1024} KiB)")


async def read_bytes(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    data = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK):
        data += chunk
        if len(data) > limit:
            raise too_large(limit)
    return bytes(data)


async def read_json(request: web.Request, limit: int) -> Any:
    """The body as JSON; bodies over OFF_LOOP_BYTES are parsed on a thread."""
    raw = await read_bytes(request, limit)
    if len(raw) > OFF_LOOP_BYTES:
        return await asyncio.get_running_loop().run_in_executor(None, parse_json, raw)
    return parse_json(raw)


def parse_json(raw: bytes | str, what: str = "the request body") -> Any:
    """JSON as a client sent it, or a 400 naming what is wrong (never a 500)."""
    if not raw.strip():
        raise BodyError(400, f"{what} is empty; send JSON")
    try:
        value = fastjson.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BodyError(400, f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise BodyError(400, f"{what} is nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # integers over Python's digit limit
        raise BodyError(400, f"{what} has a number that is too large: {exc}") from None
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
    problem = json_problem(value, surrogates=bool(_SURROGATE_ESCAPE.search(text)))
    if problem:
        raise BodyError(400, f"{what} {problem}")
    return value


def json_problem(value: Any, surrogates: bool = True) -> str | None:
    """Why a parsed JSON value cannot be taken: nested over MAX_DEPTH levels, or (when
    `surrogates`) a string that is not valid Unicode text (a lone UTF-16 surrogate)."""
    containers: list[tuple[Any, int]] = [(value, 0)] if isinstance(value, dict | list) else []
    strings: list[str] = [value] if isinstance(value, str) else []
    while containers:
        item, depth = containers.pop()
        if depth >= MAX_DEPTH:
            return f"is nested too deeply (at most {MAX_DEPTH} levels)"
        if isinstance(item, dict):
            if surrogates:
                strings.extend(item)
            children = item.values()
        else:
            children = item
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                containers.append((child, depth + 1))
            elif surrogates and kind is str:
                strings.append(child)
    for text in strings:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return (
                "has a lone UTF-16 surrogate (\\ud800-\\udfff without its pair): "
                "such text cannot be stored or shown"
            )
    return None


async def read_file_part(
    request: web.Request, limit: int, field_names: tuple[str, ...] = ("file", "image")
) -> tuple[str, bytes]:
    """(file name, bytes) of the first file field of a multipart form, within `limit`."""
    if request.content_length is not None and request.content_length > limit + CHUNK:
        raise too_large(limit)
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError):
        raise BodyError(400, "send the file as multipart/form-data") from None
    while True:
        try:
            part = await reader.next()
        except (HttpProcessingError, ValueError, AssertionError) as exc:
            raise BodyError(
                400,
                f"the multipart form is malformed: "
                f"{getattr(exc, 'message', '') or type(exc).__name__}"[:300],
            ) from None
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            continue
        if part.name not in field_names and not part.filename:
            await part.release()
            continue
        data = bytearray()
        while True:
            chunk = await part.read_chunk(CHUNK)
            if not chunk:
                break
            data += chunk
            if len(data) > limit:
                raise BodyError(413, f"file too large (the limit is {limit // (1024 * 1024)} MiB)")
        # aiohttp clients percent-encode file names; browsers send them as they are.
        name = unquote(part.filename or "upload", errors="replace")
        if "\x00" in name or any(0xD800 <= ord(c) <= 0xDFFF for c in name):
            raise BodyError(400, "the file name has a NUL byte or invalid text; rename the file")
        return name, bytes(data)
    raise BodyError(400, f"no file in the form (expected a field named {field_names[0]!r})")
