"""docs/server.md cannot rot: every `easel serve` option is documented there."""

from __future__ import annotations

import argparse
from pathlib import Path

from easel.cli import serve_cmd

DOCS = Path(__file__).resolve().parents[2] / "docs" / "server.md"


def test_every_serve_option_is_in_the_server_docs() -> None:
    parser = argparse.ArgumentParser()
    serve_cmd.configure(parser)
    text = DOCS.read_text()
    options = [
        o
        for action in parser._actions
        for o in action.option_strings
        if o.startswith("--") and o != "--help"
    ]
    assert "--max-pixels" in options and "--cancel-grace" in options
    for option in options:
        assert f"`{option}" in text or f"[{option}" in text, f"{option} is not in docs/server.md"


def test_the_docs_state_the_isolation_model_the_retry_rule_and_the_budget() -> None:
    text = DOCS.read_text()
    for phrase in (
        "## Isolation: the worker process",
        "retries the\n  run, at most `--retries`",
        "## Budget",
        "pixels x frames x batch",
    ):
        assert phrase in text, phrase
