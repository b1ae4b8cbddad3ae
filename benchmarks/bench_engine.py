"""Engine overhead: validation and execution per node on 1,000/10,000-node graphs, cached
re-runs, and memory under 1,000 distinct-seed runs with a bounded cache. Prints a table.

    python benchmarks/bench_engine.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import easel
from easel.core.cache import OutputCache
from easel.core.executor import Executor
from easel.core.graph import validate
from easel.core.plugins import Registry, load_plugins

ARRAY_MB = 4


@easel.node(category="bench", outputs={"array": "IMAGE"})
def BigArray(seed: int = 0) -> Any:
    """4 MB of noise per seed."""
    return np.random.default_rng(seed).random((ARRAY_MB * 1024 * 256,), dtype=np.float32)


@easel.node(category="bench", outputs={"array": "IMAGE"})
def Scale(array: easel.socket_type("IMAGE"), factor: float = 2.0) -> Any:  # type: ignore[valid-type]
    return array * factor


@easel.node(category="bench", outputs={"value": float})
def Total(array: easel.socket_type("IMAGE")) -> float:  # type: ignore[valid-type]
    return float(array[:16].sum())


def registry() -> Registry:
    reg = load_plugins(entry_points=False, environ={})
    for node_type in (BigArray, Scale, Total):
        reg.add_node("bench", node_type)
    return reg


def chain(n: int) -> dict[str, Any]:
    nodes: dict[str, Any] = {"n0": {"type": "Int", "inputs": {"value": 1}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {
            "type": "Math",
            "inputs": {"a": [f"n{i - 1}", "value" if i == 1 else "result"], "b": 1},
        }
    return {"format": "easel.workflow", "version": 1, "nodes": nodes}


def fan_out(n: int) -> dict[str, Any]:
    nodes: dict[str, Any] = {"src": {"type": "Int", "inputs": {"value": 1}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {"type": "Math", "inputs": {"a": ["src", "value"], "b": i}}
    return {"format": "easel.workflow", "version": 1, "nodes": nodes}


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and memory runs")
    args = parser.parse_args()
    repeat = 2 if args.quick else 5
    reg = registry()
    rows: list[tuple[str, str, str, str]] = []

    for shape, make in (("chain", chain), ("fan-out", fan_out)):
        for n in (1_000, 10_000):
            wf = make(n)
            targets = [f"n{n - 1}"] if shape == "chain" else [f"n{i}" for i in range(1, n)]
            t_validate = best_of(repeat, lambda wf=wf, t=targets: validate(wf, reg, t))
            plan = validate(wf, reg, targets)

            def fresh_run(plan=plan) -> None:
                Executor(reg, OutputCache()).run(plan)

            t_run = best_of(repeat, fresh_run)
            warm = Executor(reg, OutputCache())
            warm.run(plan)
            t_cached = best_of(repeat, lambda w=warm, p=plan: w.run(p))
            rows.append(
                (
                    f"{shape} {n:,}",
                    "validate / node",
                    f"{t_validate / n * 1e6:.1f} us",
                    "<= 20 us" if n == 10_000 else "",
                )
            )
            rows.append(
                (f"{shape} {n:,}", "execute / node", f"{t_run / n * 1e6:.1f} us", "<= 50 us")
            )
            rows.append(
                (f"{shape} {n:,}", "cached re-run / node", f"{t_cached / n * 1e6:.1f} us", "")
            )

    ten = chain(10)
    ten["nodes"]["out"] = {"type": "Total", "inputs": {"array": ["big", "array"]}}
    ten["nodes"]["big"] = {"type": "BigArray", "inputs": {"seed": 1}}
    warm = Executor(reg, OutputCache())
    warm.run(ten, targets=["n9", "out"])
    samples = []
    for _ in range(50 if not args.quick else 10):
        start = time.perf_counter()
        result = warm.run(ten, targets=["n9", "out"])
        samples.append(time.perf_counter() - start)
        assert not result.executed
    rows.append(
        (
            "10-node workflow",
            "fully cached re-run (incl. validation)",
            f"{statistics.median(samples) * 1e3:.2f} ms",
            "< 10 ms",
        )
    )

    bound = 256 * 1024**2
    runs = 200 if args.quick else 1000
    mem = Executor(reg, OutputCache(max_bytes=bound))
    wf = {
        "format": "easel.workflow",
        "version": 1,
        "nodes": {
            "big": {"type": "BigArray", "inputs": {"seed": 0}},
            "scaled": {"type": "Scale", "inputs": {"array": ["big", "array"]}},
            "total": {"type": "Total", "inputs": {"array": ["scaled", "array"]}},
        },
    }
    gc.collect()
    baseline = rss_bytes()
    peak_after_fill = 0
    for seed in range(runs):
        wf["nodes"]["big"]["inputs"]["seed"] = seed
        mem.run(wf, targets=["total"])
        if seed == 100:
            peak_after_fill = rss_bytes()
    final = rss_bytes()
    rows.append(
        (
            f"{runs} runs, distinct seeds",
            "RSS growth over baseline",
            f"{(final - baseline) / 1024**2:.0f} MiB",
            f"<= cache bound {bound // 1024**2} MiB",
        )
    )
    rows.append(
        (
            f"{runs} runs, distinct seeds",
            "RSS change after run 100",
            f"{(final - peak_after_fill) / 1024**2:+.0f} MiB",
            "no growth",
        )
    )
    rows.append(
        (
            f"{runs} runs, distinct seeds",
            "cache held / evictions",
            f"{mem.cache.bytes / 1024**2:.0f} MiB / {mem.cache.stats.evictions}",
            "",
        )
    )

    cpu = platform.processor() or platform.machine()
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (other processes share the cores)")
    print(
        f"Easel engine benchmark on {platform.node()} ({cpu}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}), best of {repeat}"
    )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("graph", "measure", "result", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
