"""`easel serve`: the browser editor and the run API in one process, on loopback by default."""

from __future__ import annotations

import argparse
import gc
import secrets
import sys
from pathlib import Path
from typing import Any

from easel.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    add_global_options,
    apply_environment,
    make_executor,
    make_registry,
    runner_config,
)
from easel.core.budget import DEFAULT_MAX_PIXELS
from easel.core.budget import from_environment as budget_from_environment
from easel.server.config import MB, ServerConfig, default_data_dir


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="serve the browser editor and the run API",
        description="Serve the graph editor and the HTTP/WebSocket run API. Binds to "
        "127.0.0.1; with any other --host a token is required (given or "
        "generated and printed).",
    )
    configure(parser)
    parser.set_defaults(func=run)
    return parser


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; others require a token)",
    )
    parser.add_argument("--port", type=int, default=8188, help="port (default 8188)")
    parser.add_argument(
        "--token",
        help="require this token (bearer header or cookie); generated when --host is not loopback",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another Host name clients may use (a reverse proxy's name)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"queue, history, uploads and saved workflows "
        f"(default $EASEL_DATA_DIR or {default_data_dir()})",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="where generated files go (default DATA_DIR/output)",
    )
    parser.add_argument("--cache-size", default="2GB", help="output cache size (default 2GB)")
    parser.add_argument(
        "--max-upload-mb", type=int, default=32, help="largest accepted upload in MiB (default 32)"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="the budget: most pixels one image or latent may have, width x "
        "height x frames x batch (default $EASEL_MAX_PIXELS or "
        f"{DEFAULT_MAX_PIXELS}, a 4096x4096 batch of 4)",
    )
    parser.add_argument(
        "--cancel-grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a cancelled node may take to return before its worker "
        "process is restarted (default 10)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="N",
        help="times a run whose worker process died is started again before it fails (default 2)",
    )
    parser.add_argument(
        "--no-worker-process",
        action="store_true",
        help="run workflows on a thread of the server process instead of a "
        "supervised worker process (for debugging: a node that exits or "
        "hangs then takes the server with it)",
    )
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run queued workflows on a Dask cluster (tcp://scheduler:8786); "
        "needs easel[distributed] here and on the workers",
    )


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from easel.server.app import create_app

    config = ServerConfig(
        host=args.host,
        port=args.port,
        token=args.token or None,
        data_dir=args.data_dir or default_data_dir(),
        output_dir=args.output_dir,
        allowed_hosts=tuple(args.allow_host),
        max_upload_bytes=args.max_upload_mb * MB,
        max_pixels=args.max_pixels or budget_from_environment().max_pixels,
        cancel_grace=max(0.0, args.cancel_grace),
        retries=max(0, args.retries),
        worker_process=not args.no_worker_process,
    )
    if config.exposed and not config.token:
        config.token = secrets.token_urlsafe(24)
    try:
        apply_environment(args)
        registry = make_registry(args)
        args.output_dir = str(config.outputs)
        executor = make_executor(args, registry)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    cluster_config = runner_config(args) if args.cluster else None
    app = create_app(config, registry, executor, cluster=args.cluster, runner_config=cluster_config)
    shown = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    if ":" in shown:
        shown = f"[{shown}]"
    url = f"http://{shown}:{config.port}/"
    if config.token:
        url += f"?token={config.token}"
    print(f"Easel editor: {url}", flush=True)
    print(f"data: {config.data_dir}  outputs: {config.outputs}", flush=True)
    if config.exposed:
        print(f"listening on {config.host} (not loopback): clients need the token", flush=True)
    responsive_process()
    try:
        web.run_app(
            app,
            host=config.host,
            port=config.port,
            print=None,
            access_log=None,
            handle_signals=True,
        )
    except OSError as exc:
        print(
            f"error: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def responsive_process() -> None:
    """The event loop shares this process with threads that parse and validate big
    workflows: hand the interpreter over more often (1 ms, not 5), and keep the objects of
    start-up (plugins, schemas) out of the garbage collector's full passes."""
    sys.setswitchinterval(0.001)
    gc.collect()
    gc.freeze()


def main(argv: list[str] | None = None) -> int:
    """Run as `python -m easel.cli.serve_cmd` (the same options as `easel serve`)."""
    parser = argparse.ArgumentParser(prog="easel serve")
    configure(parser)
    add_global_options(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
