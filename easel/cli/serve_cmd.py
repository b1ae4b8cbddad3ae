"""`easel serve`: the browser editor and the run API in one process, on loopback by default."""

from __future__ import annotations

import argparse
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
from easel.server.config import MB, ServerConfig, default_data_dir


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve", help="serve the browser editor and the run API",
        description="Serve the graph editor and the HTTP/WebSocket run API. Binds to "
                    "127.0.0.1; with any other --host a token is required (given or "
                    "generated and printed).")
    configure(parser)
    parser.set_defaults(func=run)
    return parser


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; others require a token)")
    parser.add_argument("--port", type=int, default=8188, help="port (default 8188)")
    parser.add_argument("--token", help="require this token (bearer header or cookie); "
                                        "generated when --host is not loopback")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="another Host name clients may use (a reverse proxy's name)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"queue, history, uploads and saved workflows "
                             f"(default $EASEL_DATA_DIR or {default_data_dir()})")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="where generated files go (default DATA_DIR/output)")
    parser.add_argument("--cache-size", default="2GB", help="output cache size (default 2GB)")
    parser.add_argument("--max-upload-mb", type=int, default=32,
                        help="largest accepted upload in MiB (default 32)")
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help="run queued workflows on a Dask cluster (tcp://scheduler:8786); "
                             "needs easel[distributed] here and on the workers")


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from easel.server.app import create_app

    config = ServerConfig(
        host=args.host, port=args.port, token=args.token or None,
        data_dir=args.data_dir or default_data_dir(), output_dir=args.output_dir,
        allowed_hosts=tuple(args.allow_host), max_upload_bytes=args.max_upload_mb * MB)
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
    app = create_app(config, registry, executor, cluster=args.cluster,
                     runner_config=cluster_config)
    shown = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    if ":" in shown:
        shown = f"[{shown}]"
    url = f"http://{shown}:{config.port}/"
    if config.token:
        url += f"?token={config.token}"
    print(f"Easel editor: {url}", flush=True)
    print(f"data: {config.data_dir}  outputs: {config.outputs}", flush=True)
    if config.exposed:
        print(f"listening on {config.host} (not loopback): clients need the token",
              flush=True)
    try:
        web.run_app(app, host=config.host, port=config.port, print=None,
                    access_log=None, handle_signals=True)
    except OSError as exc:
        print(f"error: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run as `python -m easel.cli.serve_cmd` (the same options as `easel serve`)."""
    parser = argparse.ArgumentParser(prog="easel serve")
    configure(parser)
    add_global_options(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
