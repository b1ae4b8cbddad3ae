"""The plugin's editor asset, in headless Chromium: the palette widget draws swatches."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_palette_widget_shows_swatches(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "easel",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "api/nodes", timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.3)
        plugins = json.loads(urllib.request.urlopen(url + "api/plugins").read())
        example = next(p for p in plugins["plugins"] if p["name"] == "example")
        assert any(m.endswith("/index.js") for m in example["modules"])
        workflow = json.loads((HERE / "workflows" / "palette.json").read_text())
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page()
                page.goto(url)
                page.wait_for_function(
                    "() => window.easel && document.body.dataset.plugins !== undefined"
                )
                page.evaluate("wf => window.easel.load(wf, 'palette')", workflow)
                swatches = page.locator(".example-palette .example-swatch")
                swatches.first.wait_for()
                assert swatches.count() == 4
                text = page.locator(".example-palette textarea")
                text.fill("red, green, blue, 0 0 0, white, navy")
                assert swatches.count() == 6
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
