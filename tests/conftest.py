"""Suite-wide options. `--slow` (or EASEL_SLOW_TESTS=1) adds the tests marked `slow`: the
variants of the model-family tests (every sampler, layout and edge case on tiny models) that
the default run leaves out to stay fast. Each family's parity with its diffusers pipeline and
one real template per family stay in the default run."""

from __future__ import annotations

import os
from typing import Any


def pytest_addoption(parser: Any) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        default=False,
        help="also run the tests marked slow (model-family variants)",
    )


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if config.getoption("--slow") or os.environ.get("EASEL_SLOW_TESTS") == "1":
        return
    keep, slow = [], []
    for item in items:
        (slow if item.get_closest_marker("slow") else keep).append(item)
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = keep


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "slow: a long model-family variant (run with --slow)")
