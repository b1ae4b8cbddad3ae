"""The server with its runs in a worker process, against the same server running them on a
thread of its own process (what it did before), and against the in-process executor.

    python benchmarks/bench_server.py [--warm 10] [--nodes 10000] [--rounds 3]

warm:    the default workflow (workflows/text_to_image.json, the bundled easel-shapes) with a
         new seed each run, posted to `POST /api/runs` and timed until `GET /api/runs/{id}`
         reports it succeeded, model loaded. Two servers run side by side, alternating run by
         run: `easel serve` (worker process) and `easel serve --no-worker-process`.
         Goal: the worker process within 5% of the thread.
big:     a fan-out of N nodes (one Int feeding N TestEcho output nodes), fully cached (the
         second run of the same workflow): the in-process executor, then the server from the
         POST to the run reported succeeded. Goal: the server at most 2x the executor.
latency: while an uncached N-node run is submitted and runs, a client keeps asking the
         cheap `GET /api/runs?limit=1`; its p50 / p99 / max. Goal: p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from easel.core.cache import OutputCache  # noqa: E402
from easel.core.executor import Executor  # noqa: E402
from easel.core.plugins import load_plugins  # noqa: E402
from easel.workflow_files import read_workflow  # noqa: E402
from tests.server.serverproc import PLUGIN, Server, free_port  # noqa: E402

GOAL_WARM_RATIO, GOAL_BIG_RATIO, GOAL_P99_MS = 1.05, 2.0, 50.0


def fan_out(n: int, value: int) -> dict[str, Any]:
    nodes: dict[str, Any] = {"n": {"type": "Int", "inputs": {"value": value}}}
    for i in range(n):
        nodes[f"e{i}"] = {"type": "TestEcho", "inputs": {"value": ["n", "value"]}}
    return {"format": "easel.workflow", "version": 1, "nodes": nodes}


def post(server: Server, body: Any) -> str:
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        server.base + "/api/runs", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return str(json.loads(response.read())["id"])


def wait_cheaply(server: Server, run_id: str, poll: float = 0.02) -> dict[str, Any]:
    """Poll the run list (a summary) rather than the run (every node's state)."""
    while True:
        for run in server.get("/api/runs?limit=3")["runs"]:
            if run["id"] == run_id and run["status"] in ("succeeded", "failed", "cancelled"):
                return dict(run)
        time.sleep(poll)


def timed_run(server: Server, workflow: dict[str, Any]) -> float:
    start = time.perf_counter()
    run = wait_cheaply(server, post(server, {"workflow": workflow}))
    seconds = time.perf_counter() - start
    if run["status"] != "succeeded":
        raise SystemExit(f"server run {run['status']}: {run.get('error')}")
    return seconds


def warm_side_by_side(
    scratch: Path, runs: int, env: dict[str, str]
) -> tuple[list[float], list[float]]:
    workflow = read_workflow(ROOT / "workflows" / "text_to_image.json")
    process = Server(scratch / "process", free_port(), env=env)
    thread = Server(scratch / "thread", free_port(), ("--no-worker-process",), env=env)
    times: dict[str, list[float]] = {"process": [], "thread": []}
    try:
        for i in range(runs + 1):
            workflow["nodes"]["sample"]["inputs"]["seed"] = 5000 + i
            order = [("process", process), ("thread", thread)]
            if i % 2:
                order.reverse()
            for name, server in order:
                seconds = timed_run(server, workflow)
                if i:  # the first run of each loads the model
                    times[name].append(seconds)
    finally:
        process.stop()
        thread.stop()
    return times["process"], times["thread"]


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (the server and its worker process)."""
    import psutil

    process = psutil.Process(pid)
    total = 0.0
    for one in [process, *process.children(recursive=True)]:
        times = one.cpu_times()
        total += times.user + times.system
    return total


def in_process(n: int, rounds: int) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds) of a fully cached run in this process."""
    registry = load_plugins([str(PLUGIN)], entry_points=False, environ={})
    executor = Executor(registry, OutputCache())
    workflow = fan_out(n, 1)
    executor.run(workflow)
    times, cpu = [], []
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = executor.run(workflow)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        assert len(result.cached) == n + 1
    return times, cpu


def through_server(
    scratch: Path, n: int, rounds: int, env: dict[str, str]
) -> tuple[list[float], list[float], list[float], float]:
    """(cached run seconds, their CPU seconds (server and worker, the client's encoding
    apart), GET latencies in ms during an uncached run, its seconds)."""
    server = Server(scratch / "big", free_port(), env=env)
    try:
        timed_run(server, fan_out(n, 1))
        cached, cpu = [], []
        for _ in range(rounds):
            before = cpu_seconds(server.process.pid)
            cached.append(timed_run(server, fan_out(n, 1)))
            cpu.append(cpu_seconds(server.process.pid) - before)
        latencies: list[float] = []
        stop = threading.Event()

        def ask() -> None:
            while not stop.is_set():
                start = time.perf_counter()
                server.get("/api/runs?limit=1")
                latencies.append((time.perf_counter() - start) * 1000)
                time.sleep(0.01)

        asker = threading.Thread(target=ask)
        asker.start()
        time.sleep(0.3)
        uncached = timed_run(server, fan_out(n, 2))
        time.sleep(0.3)
        stop.set()
        asker.join()
    finally:
        server.stop()
    return cached, cpu, latencies, uncached


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warm", type=int, default=10, help="warm runs each (default 10)")
    parser.add_argument("--nodes", type=int, default=10_000, help="fan-out size (10000)")
    parser.add_argument("--rounds", type=int, default=3, help="cached big runs (default 3)")
    parser.add_argument("--skip-warm", action="store_true", help="only the big-run figures")
    parser.add_argument("--skip-big", action="store_true", help="only the warm figures")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="OMP_NUM_THREADS for both servers (on a loaded machine, 1 keeps "
        "OpenMP's spinning threads from distorting the comparison)",
    )
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="easel-bench-server-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EASEL_MODELS_DIR": ""}
    if args.torch_threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.torch_threads)
    load_before = os.getloadavg()[0]
    print(
        f"Server on {platform.node()} ({os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()})",
        flush=True,
    )
    if not args.skip_warm:
        process, thread = warm_side_by_side(scratch, args.warm, env)
        ratio = statistics.median(process) / statistics.median(thread)
        print(
            f"warm default workflow, new seed ({len(process)} runs each, alternating): "
            f"worker process median {statistics.median(process):.3f} s (min "
            f"{min(process):.3f}), thread median {statistics.median(thread):.3f} s (min "
            f"{min(thread):.3f}); ratio {ratio:.3f} (goal <= {GOAL_WARM_RATIO}: "
            f"{'met' if ratio <= GOAL_WARM_RATIO else 'NOT met'}); load average "
            f"{os.getloadavg()[0]:.1f}",
            flush=True,
        )
    if args.skip_big:
        return
    direct, direct_cpu = in_process(args.nodes, args.rounds)
    cached, cached_cpu, latencies, uncached = through_server(scratch, args.nodes, args.rounds, env)
    ratio = statistics.median(cached) / statistics.median(direct)
    cpu_ratio = statistics.median(cached_cpu) / statistics.median(direct_cpu)
    print(
        f"fully cached {args.nodes}-node fan-out: in-process executor median "
        f"{statistics.median(direct):.3f} s ({statistics.median(direct_cpu):.3f} s CPU), "
        f"through the server (POST to succeeded) median {statistics.median(cached):.3f} s "
        f"({statistics.median(cached_cpu):.3f} s CPU, server and worker); wall ratio "
        f"{ratio:.2f}, CPU ratio {cpu_ratio:.2f} (goal <= {GOAL_BIG_RATIO}: "
        f"{'met' if ratio <= GOAL_BIG_RATIO else 'NOT met'})"
    )
    p99 = percentile(latencies, 0.99)
    print(
        f"GET /api/runs?limit=1 during an uncached {args.nodes}-node run ({uncached:.2f} s, "
        f"submission included; {len(latencies)} requests): p50 "
        f"{percentile(latencies, 0.5):.1f} ms, p99 {p99:.1f} ms, max {max(latencies):.1f} ms "
        f"(goal p99 < {GOAL_P99_MS:.0f} ms: {'met' if p99 < GOAL_P99_MS else 'NOT met'})"
    )
    print(f"load average before/after {load_before:.1f} / {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
