"""Batch throughput: a 16-item seed sweep of a text-to-image workflow with 1 and 2 local
worker processes, and on a Dask LocalCluster with 1 and 2 workers, measured in one run.

    python benchmarks/bench_batch.py [--items 16] [--tiny [--size 128] [--steps 20]]

By default it sweeps the seed of the default workflow (`workflows/text_to_image.json`, the
bundled easel-shapes model). With --tiny it builds the tiny test model family (random
weights) and samples --size images instead, which measures the batch machinery alone. Each
configuration gets the machine's cores split between its workers.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from easel.batch.batch import BatchOptions, run_batch  # noqa: E402
from easel.batch.runner import RunnerConfig  # noqa: E402


def workflow(model: str, steps: int, size: int) -> dict[str, Any]:
    return {
        "format": "easel.workflow",
        "version": 1,
        "nodes": {
            "model": {"type": "CheckpointLoader", "inputs": {"name": model}},
            "pos": {
                "type": "TextEncode",
                "inputs": {"clip": ["model", "clip"], "text": "a red circle"},
            },
            "neg": {"type": "TextEncode", "inputs": {"clip": ["model", "clip"], "text": ""}},
            "latent": {
                "type": "EmptyLatent",
                "inputs": {"width": size, "height": size, "vae": ["model", "vae"]},
            },
            "sample": {
                "type": "KSampler",
                "inputs": {
                    "model": ["model", "model"],
                    "positive": ["pos", "conditioning"],
                    "negative": ["neg", "conditioning"],
                    "latent": ["latent", "latent"],
                    "seed": 0,
                    "steps": steps,
                    "cfg": 3.0,
                    "sampler_name": "euler",
                    "scheduler": "normal",
                },
            },
            "decode": {
                "type": "VAEDecode",
                "inputs": {"vae": ["model", "vae"], "latent": ["sample", "latent"]},
            },
            "save": {
                "type": "SaveImage",
                "inputs": {"image": ["decode", "image"], "filename_prefix": "bench"},
            },
        },
    }


def timed(
    label: str, wf: dict[str, Any], options: BatchOptions, config: RunnerConfig
) -> tuple[str, float, int, float]:
    """(label, wall seconds, items ok, steady items/s between the first and last finish)."""
    start = time.perf_counter()
    batch = run_batch(wf, options, config)
    seconds = time.perf_counter() - start
    failed = len(batch.failed)
    if failed:
        print(f"{label}: {failed} items failed: {batch.failed[0].get('error')}", file=sys.stderr)
    finishes = sorted(r["finished_at"] for r in batch.results if "finished_at" in r)
    span = finishes[-1] - finishes[0] if len(finishes) > 1 else 0.0
    steady = (len(finishes) - 1) / span if span > 0 else 0.0
    return label, seconds, len(batch.results) - failed, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--tiny", action="store_true", help="the tiny random model family")
    parser.add_argument("--no-dask", action="store_true")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    scratch = Path(tempfile.mkdtemp(prefix="easel-bench-batch-"))
    if args.tiny:
        from tests.fixtures.tiny_models import build_tiny_models

        tiny = build_tiny_models(scratch / "models")
        model = tiny.name
        os.environ["EASEL_MODELS_DIR"] = str(tiny.root.resolve())
        wf = workflow(model, args.steps, args.size)
        what = f"{args.size}x{args.size}, {args.steps} steps"
    else:
        from easel.workflow_files import read_workflow

        os.environ["EASEL_MODELS_DIR"] = ""
        wf = read_workflow(ROOT / "workflows" / "text_to_image.json")
        model = wf["nodes"]["model"]["inputs"]["name"]
        what = "the default workflow (32x32, 20 steps, upscaled to 256, PNG)"
    sweep = [f"sample.seed=1..{args.items}"]
    rows = []

    def config(name: str, workers: int) -> RunnerConfig:
        return RunnerConfig(
            output_dir=str(scratch / name),
            models_dir=os.environ["EASEL_MODELS_DIR"] or None,
            torch_threads=max(1, cores // workers),
        )

    for workers in (1, 2):
        options = BatchOptions(sweeps=sweep, workers=workers, progress=False)
        rows.append(
            timed(
                f"local, {workers} worker process(es)",
                wf,
                options,
                config(f"local{workers}", workers),
            )
        )
    if not args.no_dask:
        from distributed import Client, LocalCluster

        for workers in (1, 2):
            with (
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                ) as cluster,
                Client(cluster) as client,
            ):
                options = BatchOptions(sweeps=sweep, cluster=client, progress=False)
                rows.append(
                    timed(
                        f"Dask LocalCluster, {workers} worker(s)",
                        wf,
                        options,
                        config(f"dask{workers}", workers),
                    )
                )
    print(
        f"Easel batch benchmark on {platform.node()} ({cores} cores, Python "
        f"{platform.python_version()}): {args.items}-item seed sweep, model {model}, "
        f"{what} (wall time includes worker start-up)"
    )
    print(
        f"load average before/after: {load_before:.1f} / {os.getloadavg()[0]:.1f} "
        "(other processes share these cores)"
    )
    print(
        f"{'configuration':<34} {'items ok':>8} {'wall s':>8} {'items/s':>8} {'speed-up':>9}"
        f" {'steady items/s':>15} {'steady speed-up':>16}"
    )
    first = {"local": rows[0], "Dask": rows[2] if len(rows) > 2 else rows[0]}
    for label, seconds, ok, steady in rows:
        ref = first["Dask"] if label.startswith("Dask") else first["local"]
        steady_ratio = steady / ref[3] if ref[3] else 0.0
        print(
            f"{label:<34} {ok:>8} {seconds:>8.2f} {ok / seconds:>8.2f} "
            f"{ref[1] / seconds:>8.2f}x {steady:>15.2f} {steady_ratio:>15.2f}x"
        )


if __name__ == "__main__":
    main()
