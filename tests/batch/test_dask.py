"""Batches on a Dask LocalCluster (loopback, 2 worker processes), losing a worker mid-batch."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from easel.batch.batch import BatchOptions, run_batch
from easel.batch.runner import RunnerConfig
from tests.batch.conftest import dask_client

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = str(ROOT / "tests" / "cli" / "cli_plugin.py")
WORKFLOW = {
    "format": "easel.workflow",
    "version": 1,
    "nodes": {
        "slow": {"type": "Slow", "inputs": {"value": 1, "steps": 4, "delay": 0.1}},
        "a": {"type": "Add", "inputs": {"a": ["slow", "value"], "b": 0}},
        "s": {"type": "Show", "inputs": {"value": ["a", "sum"]}},
    },
}


@pytest.fixture(scope="module")
def client():
    with dask_client(2) as dask:
        yield dask


def config(tmp_path: Path) -> RunnerConfig:
    return RunnerConfig(output_dir=str(tmp_path), plugin_files=(PLUGIN,))


def test_sweep_runs_on_both_workers_in_order(client, tmp_path):
    options = BatchOptions(sweeps=["a.b=1..8"], cluster=client, progress=False)
    batch = run_batch(WORKFLOW, options, config(tmp_path))
    assert [r["index"] for r in batch.results] == list(range(8))
    assert all(r["status"] == "succeeded" for r in batch.results)
    assert len({r["worker"] for r in batch.results}) == 2
    # Each worker kept its runner: the Slow node ran at most once per worker.
    assert sum(r["nodes"]["slow"] == "executed" for r in batch.results) <= 2


def test_demo_model_seed_sweep_loads_the_model_once_per_worker(client, tmp_path):
    """The default workflow on the shipped easel-shapes, four seeds over two workers."""
    import numpy as np
    from PIL import Image

    from easel.workflow_files import read_workflow
    from easel.zoo.shapes.analyse import analyse, score
    from easel.zoo.shapes.render_node import parse_caption

    workflow = read_workflow(ROOT / "workflows" / "text_to_image.json")
    options = BatchOptions(sweeps=["sample.seed=1..4"], cluster=client, progress=False)
    batch = run_batch(workflow, options, RunnerConfig(output_dir=str(tmp_path), torch_threads=1))
    assert [r["params"]["sample.seed"] for r in batch.results] == [1, 2, 3, 4]
    assert all(r["status"] == "succeeded" for r in batch.results), batch.failed
    assert len({r["worker"] for r in batch.results}) == 2
    loads = [r["nodes"]["model"] for r in batch.results]
    assert loads.count("executed") == 2, loads  # once per worker, cached after that
    images = [np.asarray(Image.open(f).convert("RGB")) for r in batch.results for f in r["files"]]
    assert len(images) == 4 and len({im.tobytes() for im in images}) == 4
    scene = parse_caption(workflow["nodes"]["prompt"]["inputs"]["text"])
    for image in images:
        assert score(analyse(image)[0], scene)["color"]


def test_losing_a_worker_mid_batch_loses_no_item(client, tmp_path):
    killed = threading.Event()
    options = BatchOptions(sweeps=["slow.value=1..10"], cluster=client, progress=False)
    results_seen = []
    original_on_done = None

    def kill_one_worker() -> None:
        victim = sorted(client.scheduler_info()["workers"])[0]
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, 9)
        killed.set()

    import easel.batch.batch as batch_module

    original_on_done = batch_module.append_item

    def watching_append(path, result):
        original_on_done(path, result)
        results_seen.append(result["index"])
        if len(results_seen) == 2 and not killed.is_set():
            kill_one_worker()

    batch_module.append_item = watching_append
    try:
        batch = run_batch(WORKFLOW, options, config(tmp_path))
    finally:
        batch_module.append_item = original_on_done
    assert killed.is_set()
    assert [r["index"] for r in batch.results] == list(range(10))
    assert all(r["status"] == "succeeded" for r in batch.results), batch.failed
    assert sorted(r["params"]["slow.value"] for r in batch.results) == list(range(1, 11))
