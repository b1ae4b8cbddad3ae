"""Speed of the default workflow (`workflows/text_to_image.json`, the bundled easel-shapes).

    python benchmarks/bench_default_workflow.py [--cold 3] [--warm 10]

cold: `python -m easel run` in a fresh process, from process start to the PNG on disk (the
      Quickstart's first command; imports, model loading and sampling included). Goal < 10 s.
      Beside it, the same image from a plain diffusers script (the peer), runs alternating.
warm: `easel serve` already running with the model loaded; a run with a new seed is posted
      to `POST /api/runs` and timed until `GET /api/runs/{id}` reports it succeeded (its PNG
      written). Goal < 2 s. The first server run (which loads the model) is reported apart.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from easel.workflow_files import read_workflow  # noqa: E402
from tests.server.serverproc import Server, free_port  # noqa: E402

GOAL_COLD, GOAL_WARM = 10.0, 2.0

# The peer for the cold figure: the same model, prompt and settings as a plain diffusers
# script (what a user would write without Easel), also from process start to PNG.
DIFFUSERS_SCRIPT = """
import sys, torch
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
from PIL import Image
pipe = StableDiffusionPipeline.from_pretrained(sys.argv[1], dtype=torch.float32)
pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
pipe.set_progress_bar_config(disable=True)
image = pipe(sys.argv[2], height=32, width=32, num_inference_steps=20, guidance_scale=2.0,
             generator=torch.Generator().manual_seed(7)).images[0]
image.resize((256, 256), Image.Resampling.LANCZOS).save(sys.argv[3])
"""


def timed_process(command: list[str], out: Path, env: dict[str, str]) -> float:
    """Seconds from starting `command` to its exit, which must leave a PNG in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0 or not list(out.glob("*.png")):
        raise SystemExit(f"{command[:4]} failed:\n{result.stderr[-2000:]}")
    return seconds


def cold_runs(n: int, scratch: Path, env: dict[str, str]) -> tuple[list[float], list[float]]:
    """(easel run, the diffusers script), alternating so both see the same machine state."""
    from easel.models.discovery import BUNDLED_DIR

    workflow = read_workflow(ROOT / "workflows" / "text_to_image.json")
    prompt = workflow["nodes"]["prompt"]["inputs"]["text"]
    easel, peer = [], []
    for i in range(n):
        out = scratch / f"cold{i}"
        easel.append(
            timed_process(
                [sys.executable, "-m", "easel", "run", "--quiet", "--output-dir", str(out)],
                out,
                env,
            )
        )
        out = scratch / f"peer{i}"
        peer.append(
            timed_process(
                [
                    sys.executable,
                    "-c",
                    DIFFUSERS_SCRIPT,
                    str(BUNDLED_DIR / "easel-shapes"),
                    prompt,
                    str(out / "peer.png"),
                ],
                out,
                env,
            )
        )
    return easel, peer


def timed_server_run(server: Server, workflow: dict[str, Any]) -> float:
    """Seconds from posting `workflow` to the server reporting it succeeded."""
    start = time.perf_counter()
    run_id = server.post("/api/runs", {"workflow": workflow})["id"]
    while True:
        run = server.get(f"/api/runs/{run_id}")
        if run["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    if run["status"] != "succeeded":
        raise SystemExit(f"server run {run['status']}: {run.get('error')}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cold", type=int, default=5, help="cold runs each (default 5)")
    parser.add_argument("--warm", type=int, default=10, help="warm server runs (default 10)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="easel-bench-default-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EASEL_MODELS_DIR": ""}
    load_before = os.getloadavg()[0]
    cold, peer = cold_runs(args.cold, scratch, env)

    workflow = read_workflow(ROOT / "workflows" / "text_to_image.json")
    server = Server(scratch / "data", free_port(), env=env)
    try:
        warm = []
        first = 0.0
        for i in range(args.warm + 1):
            workflow["nodes"]["sample"]["inputs"]["seed"] = 1000 + i
            seconds = timed_server_run(server, workflow)
            if i == 0:
                first = seconds
            else:
                warm.append(seconds)
        cached = timed_server_run(server, workflow)  # the same seed again: every node cached
    finally:
        server.stop()

    print(
        f"Default workflow on {platform.node()} ({os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}); "
        f"load average before/after {load_before:.1f} / {os.getloadavg()[0]:.1f}"
    )
    print(
        f"cold `easel run`, process start to PNG ({len(cold)} runs): median "
        f"{statistics.median(cold):.2f} s, min {min(cold):.2f}, max {max(cold):.2f} "
        f"(goal < {GOAL_COLD:.0f} s: {'met' if max(cold) < GOAL_COLD else 'NOT met'})"
    )
    print(
        f"the same image from a plain diffusers script, process start to PNG: median "
        f"{statistics.median(peer):.2f} s, min {min(peer):.2f}, max {max(peer):.2f}; "
        f"easel/diffusers ratio {statistics.median(cold) / statistics.median(peer):.3f}"
    )
    print(f"server, first run (loads the model): {first:.2f} s")
    print(
        f"warm server run, new seed ({len(warm)} runs): median {statistics.median(warm):.2f} s,"
        f" min {min(warm):.2f}, max {max(warm):.2f} "
        f"(goal < {GOAL_WARM:.0f} s: {'met' if max(warm) < GOAL_WARM else 'NOT met'})"
    )
    print(f"warm server run, same seed again (all cached): {cached:.3f} s")


if __name__ == "__main__":
    main()
