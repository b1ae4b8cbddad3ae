"""Generated files (GET /api/outputs/{path}) and input images (POST/GET /api/uploads)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tempfile
import warnings
from pathlib import Path

from aiohttp import web

from easel.core.budget import Budget
from easel.server.bodies import read_file_part
from easel.server.paths import clean_file_name, inside, safe_file_name
from easel.server.security import json_error
from easel.server.state import state

routes = web.RouteTableDef()

# Pillow format -> the extension a stored upload gets.
IMAGE_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
TEMPORARY_SUFFIXES = (".part", ".tmp")  # files being written: never served
FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox",
    "Cache-Control": "private, max-age=3600",
}


@routes.get("/api/outputs/{path:.+}")
async def output_file(request: web.Request) -> web.StreamResponse:
    root = state(request).config.outputs
    file = inside(root, request.match_info["path"])
    if file is None or not file.is_file() or file.name.endswith(TEMPORARY_SUFFIXES):
        return json_error(404, "no such output file")
    return web.FileResponse(file, headers=FILE_HEADERS)


@routes.get("/api/uploads")
async def list_uploads(request: web.Request) -> web.Response:
    folder = state(request).config.input_dir
    files = (
        sorted(
            (
                p
                for p in folder.iterdir()
                if p.is_file()
                and safe_file_name(p.name)
                and not p.name.endswith(TEMPORARY_SUFFIXES)
            ),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        if folder.is_dir()
        else []
    )
    return web.json_response({"images": [p.name for p in files]})


@routes.get("/api/uploads/{name}")
async def upload_file(request: web.Request) -> web.StreamResponse:
    folder = state(request).config.input_dir
    name = safe_file_name(request.match_info["name"])
    file = inside(folder, name) if name else None
    if file is None or not file.is_file() or file.name.endswith(TEMPORARY_SUFFIXES):
        return json_error(404, "no such uploaded image")
    return web.FileResponse(file, headers=FILE_HEADERS)


def check_image(data: bytes, max_pixels: int, budget: Budget | None = None) -> tuple[str, int, int]:
    """(format, width, height) of an image, or an HTTP error naming what is wrong.

    Reads headers only: one frame may have `max_pixels`, and every frame of an animated
    image counts against the budget (pixels x frames), before anything is decoded.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                fmt, (width, height) = image.format or "", image.size
                if width * height > max_pixels:
                    raise web.HTTPRequestEntityTooLarge(
                        max_size=max_pixels,
                        actual_size=width * height,
                        text=f"image is {width}x{height} = {width * height} pixels; "
                        f"the limit is {max_pixels}",
                    )
                if fmt not in IMAGE_FORMATS:
                    raise web.HTTPUnsupportedMediaType(
                        text=f"{fmt or 'this'} images are not accepted; "
                        f"upload one of: {', '.join(IMAGE_FORMATS)}"
                    )
                frames = int(getattr(image, "n_frames", 1) or 1)
                problem = (budget or Budget()).problem(width, height, frames=frames)
                if problem:
                    raise web.HTTPRequestEntityTooLarge(
                        max_size=(budget or Budget()).max_pixels,
                        actual_size=width * height * frames,
                        text=f"image is {problem}",
                    )
                image.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise web.HTTPRequestEntityTooLarge(
            max_size=max_pixels,
            actual_size=0,
            text=f"image has too many pixels (the limit is {max_pixels})",
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise web.HTTPUnsupportedMediaType(
            text=f"not a readable image ({type(exc).__name__}); upload a PNG, JPEG, WebP, "
            "GIF or BMP file"
        ) from None
    return fmt, width, height


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a hidden temporary file next to `path`, then rename it into place."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def store_upload(folder: Path, name: str, data: bytes) -> str:
    """Store under `name`; the same bytes reuse the file, different bytes get `name-N`."""
    stem, suffix = os.path.splitext(name)
    for n in range(1000):
        candidate = folder / (f"{stem}{suffix}" if n == 0 else f"{stem}-{n}{suffix}")
        if candidate.exists():
            same = hashlib.sha256(candidate.read_bytes()).digest() == hashlib.sha256(data).digest()
            if same:
                return candidate.name
            continue
        write_atomically(candidate, data)
        return candidate.name
    raise web.HTTPConflict(text=f"too many uploads named {name!r}")


@routes.post("/api/uploads")
async def upload(request: web.Request) -> web.Response:
    config = state(request).config
    filename, data = await read_file_part(request, config.max_upload_bytes, ("image", "file"))
    if not data:
        return json_error(400, "the uploaded file is empty")
    fmt, width, height = await asyncio.get_running_loop().run_in_executor(
        None, check_image, data, config.max_upload_pixels, config.budget
    )
    stem = os.path.splitext(clean_file_name(filename))[0] or "upload"
    name = store_upload(config.input_dir, stem + IMAGE_FORMATS[fmt], data)
    return web.json_response(
        {"name": name, "format": fmt, "width": width, "height": height, "bytes": len(data)},
        status=201,
    )
