"""Runs `python -m easel serve` as a real subprocess on loopback, for tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PLUGIN = Path(__file__).with_name("testnodes.py")
BAD_PLUGIN = Path(__file__).with_name("badnodes.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`python -m easel serve` on loopback, with the test nodes."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(data_dir.parent / f"server-{port}-{time.time_ns()}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "easel",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                "--plugin",
                str(PLUGIN),
                *extra,
            ],
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                self.get("/api/nodes")
                return
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError("server did not start: " + self.output()) from None
                time.sleep(0.2)

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=10) as response:
            return json.loads(response.read())

    def post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> tuple[int, Any]:
        """(status, parsed JSON body or raw bytes) without raising on HTTP errors."""
        if body is not None:
            data = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def wait_run(
        self,
        run_id: str,
        timeout: float = 60,
        until: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            run = self.get(f"/api/runs/{run_id}")
            if run["status"] in until:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"run {run_id} still {run['status']} after {timeout}s: "
                    f"{run}\n{self.output()[-3000:]}"
                )
            time.sleep(0.05)

    def submit(self, nodes: dict[str, Any]) -> str:
        status, body = self.call(
            "POST",
            "/api/runs",
            {"workflow": {"format": "easel.workflow", "version": 1, "nodes": nodes}},
        )
        assert status == 201, body
        return str(body["id"])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()
