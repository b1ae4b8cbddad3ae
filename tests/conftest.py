"""Suite-wide options. `--slow` (or EASEL_SLOW_TESTS=1) adds the tests marked `slow`: the
variants of the model-family tests (every sampler, layout and edge case on tiny models) that
the default run leaves out to stay fast. Each family's parity with its diffusers pipeline and
one real template per family stay in the default run. Under pytest-xdist each worker computes
on one thread."""

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
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # `scripts/test` runs one worker per core: a worker's torch (and the processes its
        # tests start) take one thread each, rather than every worker taking every core (tiny
        # models then spend their time contending for the cores, not computing).
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)
