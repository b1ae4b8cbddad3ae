"""Cache keys are stable across processes; the disk cache shares results between processes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from easel.core.cache import OutputCache, canonical, node_key, sizeof
from easel.core.diskcache import DiskStore
from easel.core.executor import Executor
from tests.core.sample_nodes import CALLS, registry, workflow

KEY_ARGS = ("KSampler", 1, {"seed": 7, "cfg": 3.5, "name": "é"}, "fp", {"model": ("abc", "unet")})


def test_key_is_stable_across_processes():
    here = node_key(*KEY_ARGS)
    code = f"from easel.core.cache import node_key; print(node_key(*{KEY_ARGS!r}))"
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    ).stdout.strip()
    assert here == other and len(here) == 64


def test_key_changes_with_every_part():
    base = node_key(*KEY_ARGS)
    assert node_key("KSampler", 2, *KEY_ARGS[2:]) != base
    assert node_key("KSampler", 1, {**KEY_ARGS[2], "seed": 8}, "fp", KEY_ARGS[4]) != base
    assert node_key(*KEY_ARGS[:3], "other", KEY_ARGS[4]) != base
    assert node_key(*KEY_ARGS[:4], {"model": ("abd", "unet")}) != base
    assert node_key(*KEY_ARGS[:4], {"model": ("abc", "clip")}) != base


def test_canonical_ignores_dict_order():
    assert canonical({"a": 1, "b": [1, 2]}) == canonical({"b": [1, 2], "a": 1})


def test_sizeof_counts_arrays():
    array = np.zeros((100, 100), dtype=np.float32)
    assert sizeof({"x": array}) >= 40_000


def test_oversized_entry_is_not_kept():
    cache = OutputCache(max_bytes=1000)
    cache.put("k", {"x": np.zeros(1000)})
    assert "k" not in cache and cache.bytes == 0


@pytest.fixture
def wf():
    return workflow(
        {
            "noise": {"type": "Noise", "inputs": {"seed": 4}},
            "mean": {"type": "Mean", "inputs": {"array": ["noise", "array"]}},
            "show": {"type": "Show", "inputs": {"value": ["mean", "value"]}},
        }
    )


def test_disk_cache_serves_a_new_process_cache(tmp_path, wf):
    CALLS.clear()
    first = Executor(registry(), OutputCache(disk=DiskStore(tmp_path))).run(wf)
    assert first.executed == ["noise", "mean", "show"]
    # A fresh in-memory cache over the same folder, as a new process would have.
    second = Executor(registry(), OutputCache(disk=DiskStore(tmp_path))).run(wf)
    assert second.executed == ["noise"]  # numpy arrays have no codec: only JSON-able outputs
    assert second.cached == ["mean", "show"]
    assert second.ui == first.ui


def test_disk_cache_round_trips_tensors_and_images(tmp_path):
    import torch
    from PIL import Image

    from easel.core.plugins import load_plugins

    store = DiskStore(tmp_path, codecs=load_plugins(entry_points=False, environ={}).codecs)
    latent = {"samples": torch.randn(1, 4, 8, 8), "noise_mask": None}
    image = Image.new("RGB", (5, 4), (10, 200, 30))
    assert store.put("ab" * 32, {"latent": latent, "image": image, "n": 3})
    back = store.get("ab" * 32)
    assert torch.equal(back["latent"]["samples"], latent["samples"])
    assert back["latent"]["noise_mask"] is None
    assert back["image"].getpixel((2, 2)) == (10, 200, 30) and back["n"] == 3


def test_damaged_disk_entry_is_a_miss(tmp_path):
    store = DiskStore(tmp_path)
    assert store.put("cd" * 32, {"x": 1})
    (tmp_path / "cd" / f"{'cd' * 32}.0.json").write_text("{broken")
    assert store.get("cd" * 32) is None
