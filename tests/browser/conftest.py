"""Browser test fixtures: a real `easel serve` subprocess and headless Debian Chromium."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.serverproc import REPO, Server, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = REPO / "build" / "screenshots"
WEB_PLUGIN = Path(__file__).with_name("webplugin") / "plugin.py"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The editor with the fast test nodes and a plugin that ships editor assets."""
    data = tmp_path_factory.mktemp("easel-browser") / "data"
    process = Server(data, free_port(), extra=("--plugin", str(WEB_PLUGIN)))
    yield process
    process.stop()


@contextlib.contextmanager
def editor_page(browser: Any, server: Server) -> Iterator[Any]:
    """A fresh page on the editor, ready; fails the test on any JavaScript error."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.base + "/")
    page.wait_for_selector("body.ready")
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    with editor_page(browser, server) as opened:
        yield opened


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def pytest_collection_modifyitems(items: list[Any]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.browser)


os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
