"""ComfyUI's file routes on the server's own folders: GET /view (outputs, uploads; previews
and channels), POST /upload/image and POST /upload/mask (into the upload folder only)."""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from easel.server.bodies import BodyError
from easel.server.paths import clean_file_name, inside
from easel.server.routes_files import (
    FILE_HEADERS,
    IMAGE_FORMATS,
    TEMPORARY_SUFFIXES,
    check_image,
    write_atomically,
)
from easel.server.state import ServerState, state

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def folder_of(st: ServerState, kind: str) -> Any:
    """ComfyUI's folder types: input (uploads), output and temp (both Easel's output folder:
    previews are written to its preview/ subfolder)."""
    return {
        "input": st.config.input_dir,
        "output": st.config.outputs,
        "temp": st.config.outputs,
    }.get(kind)


async def view(request: web.Request) -> web.StreamResponse:
    st = state(request)
    query = request.query
    name, kind = query.get("filename", ""), query.get("type", "output") or "output"
    if name.endswith("]") and " [" in name:  # ComfyUI's annotated names: "x.png [output]"
        name, _, annotation = name[:-1].rpartition(" [")
        kind = annotation
    root = folder_of(st, kind)
    if root is None:
        raise BodyError(400, f"unknown type {kind[:40]!r}: use input, output or temp")
    subfolder = query.get("subfolder", "").strip("/")
    relative = f"{subfolder}/{name}" if subfolder else name
    file = inside(root, relative) if name and "/" not in name else None
    if file is None or not file.is_file() or file.name.endswith(TEMPORARY_SUFFIXES):
        raise web.HTTPNotFound(text="no such file")
    preview = query.get("preview")
    channel = query.get("channel", "")
    if preview or channel in ("rgb", "a"):
        body, content_type = await asyncio.get_running_loop().run_in_executor(
            None, converted, file, preview, channel
        )
        return web.Response(body=body, content_type=content_type, headers=FILE_HEADERS)
    return web.FileResponse(file, headers=FILE_HEADERS)


def converted(file: Any, preview: str | None, channel: str) -> tuple[bytes, str]:
    """/view's `preview=webp;90` or `channel=rgb|a` forms of an image."""
    from PIL import Image

    buffer = io.BytesIO()
    with Image.open(file) as image:
        if preview:
            fmt, _, quality = preview.partition(";")
            fmt = fmt if fmt in ("webp", "jpeg") and channel != "a" else "webp"
            out = image.convert("RGB") if fmt == "jpeg" or channel == "rgb" else image
            out.save(buffer, format=fmt.upper(), quality=int(quality) if quality.isdigit() else 90)
            return buffer.getvalue(), f"image/{fmt}"
        if channel == "rgb":
            image.convert("RGB").save(buffer, format="PNG")
        else:
            alpha = (
                image.getchannel("A") if image.mode == "RGBA" else Image.new("L", image.size, 255)
            )
            out = Image.new("RGBA", image.size)
            out.putalpha(alpha)
            out.save(buffer, format="PNG")
    return buffer.getvalue(), "image/png"


async def read_form(request: web.Request) -> tuple[dict[str, str], str, bytes]:
    """(text fields, file name, file bytes) of an upload form, within the upload limit."""
    from aiohttp import BodyPartReader

    config = state(request).config
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError):
        raise BodyError(400, "send the image as multipart/form-data (field 'image')") from None
    fields: dict[str, str] = {}
    filename, data = "", b""
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            continue
        if part.filename is not None and part.name == "image":
            chunks = bytearray()
            while chunk := await part.read_chunk():
                chunks += chunk
                if len(chunks) > config.max_upload_bytes:
                    raise BodyError(
                        413,
                        "file too large (the limit is "
                        f"{config.max_upload_bytes // (1024 * 1024)} MiB)",
                    )
            filename, data = part.filename, bytes(chunks)
        else:
            text = await part.read(decode=True)
            if len(text) > 64 * 1024:
                raise BodyError(413, f"form field {part.name!r} is too large")
            fields[str(part.name)] = text.decode("utf-8", "replace")
    if not data:
        raise BodyError(400, "no image in the form (expected a file field named 'image')")
    return fields, filename, data


def upload_target(st: ServerState, fields: Mapping[str, str], filename: str) -> tuple[Any, str]:
    """(folder, stored file name) for an upload: Easel's upload folder only, no subfolders."""
    kind = fields.get("type", "input") or "input"
    if kind != "input":
        raise BodyError(400, f"uploads go to the input folder only (type {kind[:40]!r} refused)")
    if fields.get("subfolder", "").strip("/"):
        raise BodyError(400, "Easel's upload folder has no subfolders: leave 'subfolder' empty")
    return st.config.input_dir, clean_file_name(filename)


def store(folder: Any, name: str, data: bytes, overwrite: bool) -> str:
    """ComfyUI's naming: same bytes reuse the file, else `name (1).png`, ... unless
    `overwrite`."""
    import hashlib

    stem, suffix = os.path.splitext(name)
    for n in range(1000):
        candidate = folder / (name if n == 0 else f"{stem} ({n}){suffix}")
        if candidate.exists() and not overwrite:
            if hashlib.sha256(candidate.read_bytes()).digest() == hashlib.sha256(data).digest():
                return str(candidate.name)
            continue
        write_atomically(candidate, data)
        return str(candidate.name)
    raise web.HTTPConflict(text=f"too many uploads named {name!r}")


async def upload_image(request: web.Request) -> web.Response:
    st = state(request)
    fields, filename, data = await read_form(request)
    folder, name = upload_target(st, fields, filename)
    loop = asyncio.get_running_loop()
    fmt, _, _ = await loop.run_in_executor(
        None, check_image, data, st.config.max_upload_pixels, st.config.budget
    )
    stem = os.path.splitext(name)[0] or "upload"
    stored = await loop.run_in_executor(
        None,
        store,
        folder,
        stem + IMAGE_FORMATS[fmt],
        data,
        fields.get("overwrite") in ("true", "1"),
    )
    return web.json_response({"name": stored, "subfolder": "", "type": "input"})


def masked(original: Any, mask: bytes) -> bytes:
    """The original image with the mask image's alpha as its alpha channel (a PNG)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    with Image.open(original) as source, Image.open(io.BytesIO(mask)) as painted:
        info = PngInfo()
        for key, value in (getattr(source, "text", None) or {}).items():
            info.add_text(key, value)
        result = source.convert("RGBA")
        alpha = painted.convert("RGBA").getchannel("A")
        if alpha.size != result.size:
            raise BodyError(
                400,
                f"the mask is {alpha.size[0]}x{alpha.size[1]} but the image "
                f"is {result.size[0]}x{result.size[1]}",
            )
        result.putalpha(alpha)
        buffer = io.BytesIO()
        result.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


async def upload_mask(request: web.Request) -> web.Response:
    st = state(request)
    fields, filename, data = await read_form(request)
    try:
        ref = json.loads(fields.get("original_ref", ""))
    except ValueError:
        raise BodyError(
            400, '\'original_ref\' must be JSON: {"filename", "subfolder", "type"}'
        ) from None
    if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str):
        raise BodyError(400, "'original_ref' must name the image: {\"filename\": ...}")
    root = folder_of(st, str(ref.get("type", "input") or "input"))
    subfolder = str(ref.get("subfolder", "") or "").strip("/")
    relative = f"{subfolder}/{ref['filename']}" if subfolder else ref["filename"]
    original = inside(root, relative) if root is not None else None
    if original is None or not original.is_file():
        raise web.HTTPNotFound(text="the original image of the mask is not on this server")
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(
        None, check_image, data, st.config.max_upload_pixels, st.config.budget
    )
    result = await loop.run_in_executor(None, masked, original, data)
    folder, name = upload_target(st, fields, filename)
    stored = await loop.run_in_executor(
        None,
        store,
        folder,
        (os.path.splitext(name)[0] or "mask") + ".png",
        result,
        fields.get("overwrite") in ("true", "1"),
    )
    return web.json_response({"name": stored, "subfolder": "", "type": "input"})


def upload_names(st: ServerState) -> list[str]:
    folder = st.config.input_dir
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and p.suffix.lower() in (*IMAGE_FORMATS.values(), ".jpeg")
    )


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/view", view),
    ("POST", "/upload/image", upload_image),
    ("POST", "/upload/mask", upload_mask),
]
