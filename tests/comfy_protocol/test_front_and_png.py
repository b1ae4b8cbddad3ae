"""ComfyUI's `front` reorders Easel's queue, and images of protocol runs carry ComfyUI's own
`prompt` / `workflow` chunks (so its frontend loads the graph back from the image)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from easel.pngmeta import WORKFLOW_KEY, png_info, read_text_chunks
from easel.server.queue import RunQueue


def test_front_runs_go_before_the_others(tmp_path: Path) -> None:
    queue = RunQueue(tmp_path / "queue.db")
    try:
        for run_id, front in (("a", False), ("b", False), ("c", True), ("d", True)):
            queue.add(run_id, {"nodes": {}}, front=front)
        order = [queue.claim_next(with_workflow=False)["id"] for _ in range(4)]
        assert order == ["c", "d", "a", "b"]
        assert queue.claim_next() is None
    finally:
        queue.close()


def test_a_queue_database_from_before_priorities_opens(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(str(path))
    db.executescript("""CREATE TABLE runs (seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, workflow TEXT NOT NULL, client_id TEXT,
        created REAL NOT NULL, started REAL, finished REAL, attempts INTEGER NOT NULL DEFAULT 0,
        nodes TEXT, outputs TEXT, error TEXT);
        INSERT INTO runs (id, status, workflow, created) VALUES ('old', 'queued', '{}', 0);""")
    db.commit()
    db.close()
    queue = RunQueue(path)
    try:
        queue.add("new", {"nodes": {}}, front=True)
        assert queue.claim_next(with_workflow=False)["id"] == "new"
        assert queue.claim_next(with_workflow=False)["id"] == "old"
    finally:
        queue.close()


def test_protocol_runs_write_comfyui_chunks(tmp_path: Path) -> None:
    prompt = {"3": {"class_type": "KSampler", "inputs": {"seed": 1}}}
    ui_graph = {"last_node_id": 9, "nodes": [], "links": []}
    workflow = {
        "format": "easel.workflow",
        "version": 1,
        "nodes": {},
        "ui": {
            "comfyui": {
                "prompt": prompt,
                "number": 3,
                "extra_data": {"extra_pnginfo": {"workflow": ui_graph, WORKFLOW_KEY: "not this"}},
            }
        },
    }
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buffer, "PNG", pnginfo=png_info(workflow))
    chunks = read_text_chunks(buffer.getvalue())
    assert json.loads(chunks["prompt"]) == prompt
    assert json.loads(chunks["workflow"]) == ui_graph
    assert json.loads(chunks[WORKFLOW_KEY]) == workflow  # Easel's own, not overwritten
    plain = io.BytesIO()
    Image.new("RGB", (2, 2)).save(plain, "PNG", pnginfo=png_info({"nodes": {}}))
    assert set(read_text_chunks(plain.getvalue())) == {WORKFLOW_KEY}
