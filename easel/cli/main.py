"""The `easel` entry point: parses arguments and turns errors into messages and exit codes."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from easel import __version__
from easel.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    UsageError,
    add_global_options,
    apply_environment,
)
from easel.core.graph import WorkflowError

COMMANDS = ("run", "validate", "nodes", "plugins", "convert", "serve", "models", "zoo")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="easel", description="Easel: node-graph workflows for text-to-image generation."
    )
    parser.add_argument("--version", action="version", version=f"easel {__version__}")
    add_global_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"easel.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name == f"easel.cli.{name}_cmd":
                continue  # that command is not part of this build
            raise
        add_global_options(module.add_parser(subparsers), suppress=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["zoo"]:  # its own parser takes everything after the word
        from easel.cli.zoo_cmd import run_zoo

        return run_zoo(args_list[1:])
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USAGE
        apply_environment(args)
        return int(args.func(args))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WorkflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: a message, never a traceback
        logging.getLogger("easel").debug("unexpected error", exc_info=True)
        print(f"error: {type(exc).__name__}: {exc} (run with -v for details)", file=sys.stderr)
        return EXIT_FAILED


def entry() -> NoReturn:
    """The `easel` command: `main()`, then an exit that skips the interpreter's teardown."""
    exit_without_teardown(main())


def exit_without_teardown(code: int) -> NoReturn:
    """Exit with `code` once the command is done, without unloading every module.

    After torch, diffusers and transformers are imported, Python's teardown (clearing some
    5,000 modules and collecting their objects) takes 1.5 s on a 2-core machine: 20% of a cold
    `easel run`, spent after the PNG is on disk. Everything a finished command needs still
    happens: the atexit handlers run, logging is shut down and the streams are flushed; files
    the nodes wrote are closed already. Commands that never imported torch exit normally.
    """
    if "torch" not in sys.modules:
        sys.exit(code)
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
