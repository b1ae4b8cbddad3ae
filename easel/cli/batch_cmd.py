"""`easel run --sweep/--workers/--cluster/--resume`: a batch of runs with a manifest."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from easel.batch.batch import BatchOptions, run_batch
from easel.batch.sweep import SweepError, item_label
from easel.cli.common import EXIT_FAILED, EXIT_OK, UsageError, parse_size, runner_config


def run_batch_command(args: argparse.Namespace) -> int:
    from easel.cli.run_cmd import load_workflow

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    workflow = load_workflow(args) if (args.workflow or not args.resume) else None
    config = runner_config(
        args,
        output_dir=str(Path(args.output_dir).resolve()),
        cache_bytes=parse_size(args.cache_size),
    )
    options = BatchOptions(
        sweeps=args.sweep,
        zipped=args.zip,
        workers=args.workers,
        cluster=args.cluster,
        grid=Path(args.grid) if args.grid else None,
        resume=Path(args.resume) if args.resume else None,
        manifest=Path(args.manifest) if args.manifest else None,
        progress=not args.quiet,
    )
    try:
        batch = run_batch(workflow, options, config, source=str(args.workflow or ""))
    except (SweepError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(
            json.dumps(
                {
                    "manifest": str(batch.manifest),
                    "grid": str(batch.grid or ""),
                    "skipped": batch.skipped,
                    "items": batch.results,
                },
                default=str,
            )
        )
    else:
        for result in batch.results:
            for file in result.get("files", []):
                print(file)
        print(f"manifest: {batch.manifest}", file=sys.stderr)
        if batch.grid:
            print(f"contact sheet: {batch.grid}", file=sys.stderr)
    ran = len(batch.results) - batch.skipped
    print(
        f"batch: {ran} run, {batch.skipped} already done, {len(batch.failed)} failed",
        file=sys.stderr,
    )
    for result in batch.failed:
        print(
            f"error: item {result['index']} ({item_label(result['params'])}): "
            f"{result.get('error')}",
            file=sys.stderr,
        )
    return EXIT_FAILED if batch.failed else EXIT_OK
