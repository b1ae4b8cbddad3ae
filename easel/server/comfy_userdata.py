"""ComfyUI's user-data routes (settings, saved workflows, the frontend's files) in Easel's data
folder: `<data>/comfyui/user/default/`, one user, every path kept inside it."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from easel.server.bodies import BodyError, parse_json, read_bytes
from easel.server.paths import inside
from easel.server.state import state

SETTINGS_FILE = "comfy.settings.json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def user_root(request: web.Request) -> Path:
    root = state(request).config.data_dir / "comfyui" / "user" / "default"
    root.mkdir(parents=True, exist_ok=True)
    return root


def user_path(request: web.Request, relative: str) -> Path:
    """A path inside the user folder, or 400 naming the refused path."""
    path = inside(user_root(request), relative.strip())
    if path is None:
        raise BodyError(400, f"{relative[:120]!r} is not a path inside the user folder")
    return path


def write_file(path: Path, data: bytes) -> None:
    from easel.server.routes_files import write_atomically

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, data)


# -- users and settings ----------------------------------------------------------------------
async def get_users(request: web.Request) -> web.Response:
    return web.json_response({"storage": "server", "migrated": True})


async def post_users(request: web.Request) -> web.Response:
    raise BodyError(400, "this server has one user; ComfyUI's multi-user mode is not offered")


def read_settings(request: web.Request) -> dict[str, Any]:
    path = user_root(request) / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_settings(request: web.Request, settings: dict[str, Any]) -> None:
    write_file(
        user_root(request) / SETTINGS_FILE,
        json.dumps(settings, indent=2, ensure_ascii=False).encode("utf-8"),
    )


async def get_settings(request: web.Request) -> web.Response:
    return web.json_response(read_settings(request))


async def get_setting(request: web.Request) -> web.Response:
    return web.json_response(read_settings(request).get(request.match_info["id"]))


async def read_body_json(request: web.Request) -> Any:
    return parse_json(await read_bytes(request, state(request).config.max_body_bytes))


async def post_settings(request: web.Request) -> web.Response:
    values = await read_body_json(request)
    if not isinstance(values, dict):
        raise BodyError(400, "send the settings as a JSON object")
    write_settings(request, {**read_settings(request), **values})
    return web.json_response({})


async def post_setting(request: web.Request) -> web.Response:
    value = await read_body_json(request)
    write_settings(request, {**read_settings(request), request.match_info["id"]: value})
    return web.json_response({})


# -- files ---------------------------------------------------------------------------------
def listing(folder: Path, recurse: bool, full_info: bool, split: bool) -> list[Any]:
    files = folder.rglob("*") if recurse else folder.glob("*")
    out: list[Any] = []
    for path in sorted(files):
        relative = path.relative_to(folder)
        if not path.is_file() or any(p.startswith(".") for p in relative.parts):
            continue
        name = relative.as_posix()
        if full_info:
            stat = path.stat()
            out.append({"path": name, "size": stat.st_size, "modified": stat.st_mtime})
        elif split:
            out.append([name, *relative.parts])
        else:
            out.append(name)
    return out


async def list_userdata(request: web.Request) -> web.Response:
    query = request.query
    directory = query.get("dir", "")
    if not directory:
        raise BodyError(400, "name a folder: ?dir=workflows")
    folder = user_path(request, directory)
    if not folder.is_dir():
        return web.json_response([])  # nothing saved there yet
    files = await asyncio.get_running_loop().run_in_executor(
        None,
        listing,
        folder,
        query.get("recurse") == "true",
        query.get("full_info") == "true",
        query.get("split") == "true",
    )
    return web.json_response(files)


async def list_userdata_v2(request: web.Request) -> web.Response:
    relative = request.query.get("path", "").strip("/")
    folder = user_path(request, relative) if relative else user_root(request)
    if not folder.is_dir():
        raise web.HTTPNotFound(text=f"no folder {relative[:120]!r} in the user data")
    out = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        stat = path.stat()
        entry: dict[str, Any] = {
            "name": path.name,
            "path": path.relative_to(user_root(request)).as_posix(),
            "type": "directory" if path.is_dir() else "file",
            "modified": stat.st_mtime,
        }
        if path.is_file():
            entry["size"] = stat.st_size
        out.append(entry)
    return web.json_response(out)


async def get_userdata(request: web.Request) -> web.StreamResponse:
    path = user_path(request, request.match_info["file"])
    if not path.is_file():
        raise web.HTTPNotFound(text="no such user file")
    return web.FileResponse(
        path, headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
    )


def file_info(request: web.Request, path: Path, full: bool) -> Any:
    name = path.relative_to(user_root(request)).as_posix()
    if not full:
        return name
    stat = path.stat()
    return {"path": name, "size": stat.st_size, "modified": stat.st_mtime}


async def post_userdata(request: web.Request) -> web.Response:
    path = user_path(request, request.match_info["file"])
    if path.exists() and request.query.get("overwrite", "true") == "false":
        raise web.HTTPConflict(text="the file exists (send ?overwrite=true to replace it)")
    if path.is_dir():
        raise web.HTTPConflict(text="a folder has that name")
    data = await read_bytes(request, state(request).config.max_body_bytes)
    await asyncio.get_running_loop().run_in_executor(None, write_file, path, data)
    return web.json_response(file_info(request, path, request.query.get("full_info") == "true"))


async def delete_userdata(request: web.Request) -> web.Response:
    path = user_path(request, request.match_info["file"])
    if not path.is_file():
        raise web.HTTPNotFound(text="no such user file")
    path.unlink()
    return web.Response(status=204)


async def move_userdata(request: web.Request) -> web.Response:
    source = user_path(request, request.match_info["file"])
    dest = user_path(request, request.match_info["dest"])
    if not source.is_file():
        raise web.HTTPNotFound(text="no such user file")
    if dest.exists() and request.query.get("overwrite", "true") == "false":
        raise web.HTTPConflict(text="the destination exists (send ?overwrite=true)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.get_running_loop().run_in_executor(None, shutil.move, source, dest)
    return web.json_response(file_info(request, dest, request.query.get("full_info") == "true"))


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/users", get_users),
    ("POST", "/users", post_users),
    ("GET", "/settings", get_settings),
    ("POST", "/settings", post_settings),
    ("GET", "/settings/{id}", get_setting),
    ("POST", "/settings/{id}", post_setting),
    ("GET", "/userdata", list_userdata),
    ("GET", "/v2/userdata", list_userdata_v2),
    ("GET", "/userdata/{file}", get_userdata),
    ("POST", "/userdata/{file}", post_userdata),
    ("DELETE", "/userdata/{file}", delete_userdata),
    ("POST", "/userdata/{file}/move/{dest}", move_userdata),
]
