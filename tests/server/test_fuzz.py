"""Fuzz: mutated workflows posted to a running `easel serve` never get a 5xx, and the server
keeps answering and finishing runs.

A small seeded count runs in the fast suite; set EASEL_FUZZ_COUNT (e.g. 2000) for more, and
EASEL_FUZZ_SEED to explore other mutations.
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from tests.server.serverproc import Server, free_port

COUNT = int(os.environ.get("EASEL_FUZZ_COUNT", "120"))
SEED = int(os.environ.get("EASEL_FUZZ_SEED", "14"))
# Node types a mutation may switch to: quick ones (no models, no long sleeps).
QUICK_TYPES = [
    "TestEcho",
    "TestFail",
    "TestLoad",
    "TestSave",
    "Int",
    "Float",
    "String",
    "Seed",
    "EmptyLatent",
    "Upscale",
    "LoadImage",
    "PreviewImage",
    "Nope",
    "",
]
NASTY_TEXT = [
    '"\\u0000"',
    '"\\ud800"',
    '"\\udfff x"',
    "1" * 5000,
    "-" + "9" * 4400,
    "1e999",
    "-1e999",
    "[" * 2000 + "]" * 2000,
    '{"a":' * 300 + "1" + "}" * 300,
    '"' + "x" * 200_000 + '"',
    "null",
    "true",
    "[]",
    "{}",
    '{"value": {}}',
    '["a", "b", "c"]',
    '["missing", "out"]',
    "0.1",
    "-1",
    "2147483648",
    '"../../etc/passwd"',
    '"/etc/passwd"',
    '"C:\\\\x"',
    '"x.png.part"',
]


def easel(nodes: dict[str, Any]) -> dict[str, Any]:
    return {"format": "easel.workflow", "version": 1, "nodes": nodes, "ui": {"n": 1}}


SEEDS: list[Any] = [
    easel({"echo": {"type": "TestEcho", "inputs": {"value": 3}}}),
    easel(
        {
            "n": {"type": "Int", "inputs": {"value": 4}},
            "echo": {"type": "TestEcho", "inputs": {"value": ["n", "value"]}},
        }
    ),
    easel({"fail": {"type": "TestFail", "inputs": {"value": 1}}}),
    easel({"load": {"type": "TestLoad", "inputs": {"image": "seed.png"}}}),
    easel(
        {
            "n": {"type": "Int", "inputs": {"value": 9}},
            "save": {"type": "TestSave", "inputs": {"value": ["n", "value"], "prefix": "f"}},
        }
    ),
    easel(
        {
            "latent": {"type": "EmptyLatent", "inputs": {"width": 64, "height": 64}},
            "load": {"type": "LoadImage", "inputs": {"image": "seed.png"}},
            "up": {"type": "Upscale", "inputs": {"image": ["load", "image"], "scale": 2}},
            "show": {"type": "PreviewImage", "inputs": {"image": ["up", "image"]}},
        }
    ),
    {
        "1": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
    },
    {
        "nodes": [
            {
                "id": 1,
                "type": "EmptyLatentImage",
                "widgets_values": [64, 64, 1],
                "outputs": [{"name": "LATENT", "type": "LATENT", "links": [1]}],
            },
            {
                "id": 2,
                "type": "PreviewImage",
                "inputs": [{"name": "images", "type": "IMAGE", "link": 1}],
            },
        ],
        "links": [[1, 1, 0, 2, 0, "LATENT"]],
        "version": 0.4,
    },
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    (data / "input").mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(data / "input" / "seed.png")
    process = Server(data, free_port(), ("--cancel-grace", "2"))
    try:
        yield process
    finally:
        process.stop()


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths(child, (*prefix, index))


def parent_of(root: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        root = root[part]
    return root


MARK = "__fuzz_nasty_%d__"


def mutate(rng: random.Random, workflow: Any) -> str:
    """The JSON text of a mutated workflow body (some mutations only exist as text)."""
    data = copy.deepcopy(workflow)
    nasty: dict[str, str] = {}
    for _ in range(rng.randint(1, 4)):
        targets = [p for p in paths(data) if p]
        if not targets:
            break
        path = rng.choice(targets)
        holder = parent_of(data, path)
        key = path[-1]
        choice = rng.random()
        if choice < 0.35:
            mark = MARK % len(nasty)
            nasty[mark] = rng.choice(NASTY_TEXT)
            holder[key] = mark
        elif choice < 0.5 and isinstance(holder, dict):
            del holder[key]
        elif choice < 0.65 and isinstance(holder, dict) and key == "type":
            holder[key] = rng.choice(QUICK_TYPES)
        elif choice < 0.75:
            holder[key] = rng.choice([[], {}, [key], {"value": holder[key]}, None, 0, "x"])
        elif choice < 0.85 and isinstance(holder, dict):
            holder[rng.choice(["extra", "value", "inputs", "type", "links", "nodes", "ui"])] = (
                copy.deepcopy(holder[key])
            )
        elif isinstance(holder[key], int | float) and not isinstance(holder[key], bool):
            holder[key] = rng.choice([0, -1, 10**9, 2**63, 1e308, -0.5, 16384, 8192])
        else:
            holder[key] = rng.choice(["", "a" * 1000, "../x", "\u202e", "\x7f", "é"])
    text = json.dumps({"workflow": data, "client_id": rng.choice([None, "c", 5, ["x"]])})
    for mark, raw in nasty.items():
        text = text.replace(json.dumps(mark), raw)
    if rng.random() < 0.05:
        text = text[: rng.randint(0, len(text))]  # truncated body
    return text


def test_mutated_workflows_never_get_a_5xx(server: Server) -> None:
    rng = random.Random(SEED)
    statuses: dict[int, int] = {}
    accepted: list[str] = []
    for index in range(COUNT):
        body = mutate(rng, rng.choice(SEEDS)).encode("utf-8", "surrogatepass")
        route = rng.choice(
            ["/api/runs"] * 6
            + [
                "/api/workflows/convert",
                f"/api/workflows/fuzz-{index % 5}",
                "/api/workflows/from-file",
            ]
        )
        method = "PUT" if route.startswith("/api/workflows/fuzz") else "POST"
        status, answer = server.call(
            method, route, data=body, headers={"Content-Type": "application/json"}
        )
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, (route, body[:500], answer, server.output()[-3000:])
        if route == "/api/runs" and status == 201:
            accepted.append(answer["id"])
    # Uploads with fuzzed bytes.
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    for _ in range(max(5, COUNT // 20)):
        data = bytearray(png.getvalue())
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        status, answer = server.call(
            "POST",
            "/api/workflows/from-file",
            data=bytes(data),
            headers={"Content-Type": "image/png"},
        )
        assert status < 500, answer
    # Whatever was accepted finishes (the queue never sticks), and the server still works.
    for run_id in accepted:
        run = server.wait_run(run_id, timeout=120)
        assert run["status"] in ("succeeded", "failed", "cancelled")
    assert sum(statuses.get(s, 0) for s in (400, 413, 415)) > COUNT // 2, statuses
    run_id = server.submit({"echo": {"type": "TestEcho", "inputs": {"value": 1}}})
    assert server.wait_run(run_id)["status"] == "succeeded"
    started = time.monotonic()
    server.get("/api/runs?limit=5")
    assert time.monotonic() - started < 5
