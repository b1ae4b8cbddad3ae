"""Batch test fixtures: a Dask LocalCluster on loopback whose workers can import the tests."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from distributed import Client, LocalCluster

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def dask_client(n_workers: int) -> Iterator[Client]:
    """A LocalCluster of `n_workers` processes (one thread each) and a client to it."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(ROOT)  # the workers import the test plugins' nodes
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()
        if previous is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous
