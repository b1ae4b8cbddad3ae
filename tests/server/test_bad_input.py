"""Bad input gets a 4xx naming what is wrong, never a 500, and nothing allocates beyond the
budget: upload bombs, deep JSON, huge integers, NUL bytes, lone surrogates, oversized sizes.
Through a real `easel serve` process."""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from easel.core.budget import DEFAULT_MAX_PIXELS, Budget
from easel.core.executor import Executor
from easel.core.plugins import load_plugins
from tests.server.serverproc import Server, free_port

LEFTOVERS = (
    "output/.x.png.part",
    "output/sub/.y.png.tmp",
    "input/.upload.part",
    "workflows/.draft.json.part",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("badinput") / "data"
    for name in LEFTOVERS:  # what a killed server leaves behind
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes(b"half written")
    process = Server(data, free_port())
    process.data = data  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        process.stop()


def workflow(nodes: dict[str, Any]) -> dict[str, Any]:
    return {"format": "easel.workflow", "version": 1, "nodes": nodes}


def post_raw(
    server: Server, path: str, data: bytes, content_type: str = "application/json"
) -> tuple[int, Any]:
    return server.call("POST", path, data=data, headers={"Content-Type": content_type})


def multipart(filename: bytes, data: bytes, field: str = "image") -> tuple[bytes, str]:
    boundary = "easelboundary42"
    body = (
        (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="').encode()
        + filename
        + (
            b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
    )
    return body, f"multipart/form-data; boundary={boundary}"


def animated(fmt: str, size: int, frames: int) -> bytes:
    """A small file that decodes to `frames` full frames of size x size (alternating colours,
    so no encoder merges them)."""
    pictures = [
        Image.new("RGB", (size, size), (255, 0, 0) if i % 2 else (0, 0, 255)) for i in range(frames)
    ]
    buffer = io.BytesIO()
    pictures[0].save(buffer, fmt, save_all=True, append_images=pictures[1:], duration=50)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (what a decompression bomb looks like
    before decoding)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    rows = zlib.compress(b"\x00" * (width + 1) * 16, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"tEXt", b"easel.workflow\x00{}")
        + chunk(b"IDAT", rows)
        + chunk(b"IEND", b"")
    )


# -- JSON that the parser or the converter cannot take ----------------------------------------
@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"workflow": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
        (b'{"workflow": ' + b"[" * 150 + b"]" * 150 + b"}", "nested too deeply"),
        (
            b'{"workflow": {"format": "easel.workflow", "version": 1, "nodes": {"a": {"type": '
            b'"TestEcho", "inputs": {"value": ' + b"9" * 5000 + b"}}}}}",
            "number that is too large",
        ),
        (
            b'{"workflow": {"format": "easel.workflow", "version": 1, '
            b'"nodes": {"a\\ud800": {"type": "TestEcho"}}}}',
            "lone UTF-16 surrogate",
        ),
        (b'{"workflow": {"nodes": [], "links": 1}}', "'links' must be a list"),
        (b'{"workflow": {"nodes": [1, {"id": []}], "links": [[]]}}', "not a ComfyUI"),
    ],
)
def test_bad_json_bodies_get_400(server: Server, body: bytes, says: str) -> None:
    for path in ("/api/runs", "/api/workflows/convert"):
        status, answer = post_raw(server, path, body)
        assert status == 400, (path, answer)
        assert says in answer["error"] + json.dumps(answer.get("problems", [])), answer


def test_deep_json_in_a_dropped_file_gets_400(server: Server) -> None:
    status, answer = post_raw(server, "/api/workflows/from-file", b"[" * 3000 + b"]" * 3000)
    assert status == 400 and "nested too deeply" in answer["error"]


def test_lone_surrogate_in_a_saved_workflow_gets_400(server: Server) -> None:
    body = b'{"format": "easel.workflow", "version": 1, "nodes": {}, "ui": {"title": "\\udc80"}}'
    status, answer = server.call(
        "PUT", "/api/workflows/mine", data=body, headers={"Content-Type": "application/json"}
    )
    assert status == 400 and "surrogate" in answer["error"]
    status, answer = server.call(
        "PUT", "/api/workflows/%ED%A0%80", data=b"{}", headers={"Content-Type": "application/json"}
    )
    assert status == 400, answer


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        (b"a\x00b.png", 400),
        (b"a%00b.png", 400),
        (b"%ED%A0%80.png", 201),  # not UTF-8 once decoded: replaced, then cleaned to a safe name
    ],
)
def test_nul_or_invalid_text_in_an_upload_file_name(
    server: Server, filename: bytes, expected: int
) -> None:
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, "PNG")
    body, content_type = multipart(filename, png.getvalue())
    status, answer = post_raw(server, "/api/uploads", body, content_type)
    assert status == expected, answer


# -- the budget ------------------------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "suffix"), [("PNG", "png"), ("GIF", "gif")])
def test_every_frame_of_an_animated_upload_counts(server: Server, fmt: str, suffix: str) -> None:
    bomb = animated(fmt, 1000, 70)  # 70 million pixels: each frame is small
    assert len(bomb) < 500_000
    body, content_type = multipart(f"bomb.{suffix}".encode(), bomb)
    status, answer = post_raw(server, "/api/uploads", body, content_type)
    assert status == 413, answer
    assert "1000x1000 x 70 frames" in answer["error"] and "budget" in answer["error"]
    small = animated(fmt, 100, 10)
    body, content_type = multipart(f"fine.{suffix}".encode(), small)
    assert post_raw(server, "/api/uploads", body, content_type)[0] == 201


def test_from_file_reads_the_header_before_decoding(server: Server) -> None:
    bomb = png_claiming(13300, 13300)
    assert len(bomb) < 50_000
    started = time.monotonic()
    status, answer = post_raw(server, "/api/workflows/from-file", bomb, "image/png")
    assert status == 413 and "13300x13300" in answer["error"], answer
    assert time.monotonic() - started < 2.0
    assert server.get("/api/nodes")  # nothing froze


def test_sizes_over_the_budget_are_refused_at_submission_naming_node_and_input(
    server: Server,
) -> None:
    status, answer = server.call(
        "POST",
        "/api/runs",
        {
            "workflow": workflow(
                {
                    "latent": {
                        "type": "EmptyLatent",
                        "inputs": {"width": 8192, "height": 8192, "batch_size": 4},
                    },
                    "up": {
                        "type": "Upscale",
                        "inputs": {"image": ["load", "image"], "width": 16384, "height": 16384},
                    },
                    "load": {"type": "LoadImage", "inputs": {"image": "nothing.png"}},
                    "echo": {"type": "TestEcho"},
                }
            )
        },
    )
    assert status == 400
    problems = {(p["node"], p["input"]): p["message"] for p in answer["problems"]}
    assert "budget" in problems[("latent", "batch_size")]
    assert "16384x16384" in problems[("up", "width")]


def test_default_budget_allows_a_2048_batch_of_4_and_refuses_the_bombs() -> None:
    budget = Budget()
    assert budget.max_pixels == DEFAULT_MAX_PIXELS
    assert budget.problem(2048, 2048, batch=4) is None
    assert budget.problem(4096, 4096, batch=4) is None
    assert budget.problem(2000, 2000, frames=400)  # the 39 KB APNG
    assert budget.problem(2000, 2000, frames=40)  # the 5 KB GIF
    assert budget.problem(16384, 16384, batch=64)  # Upscale
    assert budget.problem(13300, 13300)  # from-file
    executor = Executor(load_plugins(entry_points=False, environ={}))
    executor.validate(
        workflow(
            {
                "latent": {
                    "type": "EmptyLatent",
                    "inputs": {"width": 2048, "height": 2048, "batch_size": 4},
                }
            }
        ),
        targets=["latent"],
    )


def test_load_image_refuses_a_file_over_the_budget_at_run_time(server: Server) -> None:
    data: Path = server.data  # type: ignore[attr-defined]
    (data / "input" / "bomb.png").write_bytes(animated("PNG", 1000, 70))  # not via upload
    run_id = server.submit(
        {
            "load": {"type": "LoadImage", "inputs": {"image": "bomb.png"}},
            "show": {"type": "PreviewImage", "inputs": {"image": ["load", "image"]}},
        }
    )
    run = server.wait_run(run_id)
    assert run["status"] == "failed"
    [failure] = run["error"]["failures"]
    assert (failure["node"], failure["input"]) == ("load", "image")
    assert "70 frames" in failure["message"] and "budget" in failure["message"]


# -- file names given by link or {"value": ...} --------------------------------------------
def test_file_inputs_in_value_objects_are_checked_at_submission(server: Server) -> None:
    status, answer = server.call(
        "POST",
        "/api/runs",
        {
            "workflow": workflow(
                {"load": {"type": "TestLoad", "inputs": {"image": {"value": "../queue.sqlite3"}}}}
            )
        },
    )
    assert status == 400
    assert answer["problems"][0]["input"] == "image"
    assert "not the name of an uploaded image" in answer["problems"][0]["message"]


def test_file_inputs_given_by_link_are_checked_at_run_time(server: Server) -> None:
    data: Path = server.data  # type: ignore[attr-defined]
    Image.new("RGB", (4, 4)).save(data / "secret.png")  # beside the upload folder
    run_id = server.submit(
        {
            "name": {"type": "String", "inputs": {"value": "../secret.png"}},
            "load": {"type": "LoadImage", "inputs": {"image": ["name", "value"]}},
            "show": {"type": "PreviewImage", "inputs": {"image": ["load", "image"]}},
        }
    )
    run = server.wait_run(run_id)
    assert run["status"] == "failed"
    [failure] = run["error"]["failures"]
    assert (failure["node"], failure["input"]) == ("load", "image")
    assert str(data) not in failure["message"]


# -- small fixes -----------------------------------------------------------------------------
def test_leftover_temporary_files_are_removed_at_start_up(server: Server) -> None:
    data: Path = server.data  # type: ignore[attr-defined]
    for name in LEFTOVERS:
        assert not (data / name).exists(), name


def test_part_files_are_never_served(server: Server) -> None:
    data: Path = server.data  # type: ignore[attr-defined]
    (data / "output" / "x.png.part").write_bytes(b"\x89PNG half")
    (data / "output" / "x.png").write_bytes(b"\x89PNG whole")
    assert server.call("GET", "/api/outputs/x.png.part")[0] == 404
    assert server.call("GET", "/api/outputs/x.png") == (200, b"\x89PNG whole")


def test_links_leaving_the_workflows_folder_are_refused(server: Server, tmp_path: Path) -> None:
    data: Path = server.data  # type: ignore[attr-defined]
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(workflow({})))
    (data / "workflows" / "evil.json").symlink_to(outside)
    status, answer = server.call("GET", "/api/workflows/evil")
    assert status == 403 and "outside" in answer["error"]
    names = [w["name"] for w in server.get("/api/workflows")["workflows"]]
    assert "evil" not in names
    assert server.call("DELETE", "/api/workflows/evil")[0] == 200
    assert outside.exists()  # the link went, not its target


@pytest.mark.parametrize(
    "text",
    [
        "[" * 5000 + "]" * 5000,
        '{"format": "easel.workflow", "version": 1, "nodes": {"a": '
        '{"type": "Int", "inputs": {"value": ' + "9" * 5000 + "}}}}",
    ],
)
def test_the_command_line_exits_2_on_the_same_bad_json(tmp_path: Path, text: str) -> None:
    import subprocess
    import sys

    from tests.server.serverproc import REPO

    file = tmp_path / "bad.json"
    file.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "easel", "validate", str(file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
