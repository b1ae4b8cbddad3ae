"""Reading request bodies within the size limits: JSON, raw bytes, one multipart file."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

CHUNK = 64 * 1024


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
    raw = await read_bytes(request, limit)
    if not raw.strip():
        raise BodyError(400, "the request body is empty; send JSON")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BodyError(400, f"the request body is not valid JSON: {exc}") from None


async def read_file_part(request: web.Request, limit: int,
                         field_names: tuple[str, ...] = ("file", "image")
                         ) -> tuple[str, bytes]:
    """(file name, bytes) of the first file field of a multipart form, within `limit`."""
    if request.content_length is not None and request.content_length > limit + CHUNK:
        raise too_large(limit)
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError):
        raise BodyError(400, "send the file as multipart/form-data") from None
    while True:
        part = await reader.next()
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
        return unquote(part.filename or "upload"), bytes(data)
    raise BodyError(400, f"no file in the form (expected a field named {field_names[0]!r})")
