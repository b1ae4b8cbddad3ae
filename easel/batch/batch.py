"""A batch run: items from sweeps, sent to a backend, streamed into a manifest and a grid."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easel.batch.backends import Item, run_here, run_processes
from easel.batch.contact_sheet import write_contact_sheet
from easel.batch.manifest import append_item, read_manifest, write_manifest
from easel.batch.runner import RunnerConfig
from easel.batch.sweep import SweepError, item_label, make_items, parse_sweep
from easel.core.status import RunStatus


@dataclass
class BatchOptions:
    sweeps: list[str] = field(default_factory=list)
    zipped: bool = False
    workers: int = 1
    cluster: Any = None  # an address like tcp://host:8786, or a distributed.Client
    grid: Path | None = None
    resume: Path | None = None
    manifest: Path | None = None
    progress: bool = True


@dataclass
class BatchResult:
    results: list[dict[str, Any]]
    manifest: Path
    grid: Path | None
    skipped: int

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r.get("status") != RunStatus.SUCCEEDED]


def run_batch(
    workflow: dict[str, Any] | None, options: BatchOptions, config: RunnerConfig, source: str = ""
) -> BatchResult:
    previous: dict[int, dict[str, Any]] = {}
    sweep_texts, zipped = list(options.sweeps), options.zipped
    if options.resume is not None:
        header, previous = read_manifest(options.resume)
        if workflow is None:
            workflow = header.get("workflow")
        sweep_texts = sweep_texts or list(header.get("sweeps", []))
        zipped = zipped or bool(header.get("zip", False))
    if workflow is None:
        raise SweepError("no workflow to run")
    sweeps = [parse_sweep(text) for text in sweep_texts]
    items: list[Item] = list(enumerate(make_items(sweeps, zipped)))
    manifest = options.resume or options.manifest or Path(config.output_dir) / "manifest.jsonl"
    kept = [
        previous[i]
        for i, params in items
        if i in previous
        and previous[i].get("status") == RunStatus.SUCCEEDED
        and previous[i].get("params") == params
    ]
    kept_ids = {r["index"] for r in kept}
    todo = [(i, params) for i, params in items if i not in kept_ids]
    header = {
        "workflow": workflow,
        "source": source,
        "sweeps": sweep_texts,
        "zip": zipped,
        "items": len(items),
    }
    write_manifest(manifest, header, kept)

    bar = _progress(len(todo), options.progress)
    finished = 0

    def on_done(result: dict[str, Any]) -> None:
        nonlocal finished
        append_item(manifest, result)  # a crash mid-batch loses no finished item
        finished += 1
        ok = result.get("status") == RunStatus.SUCCEEDED
        line = (
            f"[{finished}/{len(todo)}] item {result['index']} "
            f"({item_label(result['params'])}) "
            + ("done" if ok else f"failed: {result.get('error')}")
        )
        if bar is not None:
            bar.update(1)
            if not ok:
                bar.write(line, file=sys.stderr)
        elif options.progress:
            print(line, file=sys.stderr, flush=True)

    new = list(_backend(options, config, workflow, todo, on_done))
    if bar is not None:
        bar.close()
    results = sorted(kept + new, key=lambda r: r["index"])
    write_manifest(manifest, header, results)
    grid = write_contact_sheet(results, options.grid) if options.grid else None
    return BatchResult(results, manifest, grid, len(kept))


def _backend(
    options: BatchOptions,
    config: RunnerConfig,
    workflow: dict[str, Any],
    todo: list[Item],
    on_done: Any,
) -> Iterator[dict[str, Any]]:
    if not todo:
        return iter(())
    if options.cluster is not None:
        from easel.batch.dask_backend import run_cluster

        return run_cluster(options.cluster, config, workflow, todo, on_done)
    if options.workers > 1:
        return run_processes(config, workflow, todo, min(options.workers, len(todo)), on_done)
    return run_here(config, workflow, todo, on_done)


def _progress(total: int, enabled: bool) -> Any:
    """A bar on a terminal; None elsewhere (plain lines are printed instead)."""
    if not enabled or total == 0 or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="batch", unit="item", file=sys.stderr, mininterval=0.5)
