"""A server killed with SIGKILL and restarted finishes every queued run (a real subprocess)."""

from __future__ import annotations

import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.server.serverproc import Server, free_port


def slow_run(value: int) -> dict[str, Any]:
    return {
        "workflow": {
            "format": "easel.workflow",
            "version": 1,
            "nodes": {
                "slow": {"type": "TestSlow", "inputs": {"value": value, "steps": 10, "delay": 0.1}},
                "save": {"type": "TestSave", "inputs": {"value": ["slow", "value"]}},
            },
        }
    }


def test_sigkilled_server_finishes_every_queued_run_after_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    server = Server(data, port)
    try:
        ids = [server.post("/api/runs", slow_run(value))["id"] for value in range(1, 5)]
        deadline = time.monotonic() + 30
        while True:
            first = server.get(f"/api/runs/{ids[0]}")
            if first["status"] == "running" and first["nodes"].get("slow", {}).get("step"):
                break
            assert time.monotonic() < deadline, first
            time.sleep(0.05)
        server.stop(signal.SIGKILL)
        assert server.process.returncode == -signal.SIGKILL
    finally:
        server.stop()

    restarted = Server(data, port)
    try:
        deadline = time.monotonic() + 60
        while True:
            runs = [restarted.get(f"/api/runs/{run_id}") for run_id in ids]
            if all(run["status"] == "succeeded" for run in runs):
                break
            assert time.monotonic() < deadline, [run["status"] for run in runs]
            assert not any(run["status"] in ("failed", "cancelled") for run in runs), runs
            time.sleep(0.2)
        assert [run["attempts"] for run in runs] == [2, 1, 1, 1]
        assert runs[0]["started"] < runs[1]["started"]  # the interrupted run went first
        files = [run["outputs"]["save"]["files"][0] for run in runs]
        assert [name.rsplit("_", 1)[1] for name in files] == ["1.png", "2.png", "3.png", "4.png"]
        for name in files:
            with urllib.request.urlopen(f"{restarted.base}/api/outputs/{name}") as response:
                assert response.read().startswith(b"\x89PNG")
        history = restarted.get("/api/runs")
        assert history["total"] == 4 and history["counts"]["succeeded"] == 4
    finally:
        restarted.stop()
    assert restarted.process.returncode == 0, restarted.output()
