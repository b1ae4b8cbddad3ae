"""What several commands share: plugin loading, the executor, usage errors, value parsing."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from easel.core.cache import OutputCache
from easel.core.executor import Executor
from easel.core.plugins import Registry, load_plugins

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or an invalid workflow: printed without a traceback, exit code 2."""


def add_global_options(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """Options every command takes; on subcommands (`suppress`) they only override if given."""
    if "--plugin" in parser._option_string_actions:
        return  # the command added them itself
    defaults: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    parser.add_argument(
        "--plugin",
        action="append",
        metavar="FILE",
        **defaults,
        help="load a plugin from a Python file or module (repeatable)",
    )
    parser.add_argument(
        "--models-dir",
        metavar="DIR",
        **defaults,
        help="where to find models: a models folder (ComfyUI layout), a "
        "ComfyUI or A1111 install, or an extra_model_paths.yaml (default: "
        "$EASEL_MODELS_DIR, the config file, the user data folder)",
    )
    parser.add_argument(
        "--allow-unsafe-pickle",
        action="store_true",
        **defaults,
        help="allow loading pickle checkpoints (.ckpt/.pt/.bin): they can run arbitrary code",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debug details", **defaults
    )


def apply_environment(args: argparse.Namespace) -> None:
    """Options that nodes read through the environment of this process."""
    if getattr(args, "models_dir", None):
        os.environ["EASEL_MODELS_DIR"] = str(Path(args.models_dir).expanduser().resolve())
    if getattr(args, "allow_unsafe_pickle", False):
        os.environ["EASEL_ALLOW_UNSAFE_PICKLE"] = "1"


def make_registry(args: argparse.Namespace, quiet: bool = False) -> Registry:
    registry = load_plugins(getattr(args, "plugin", []) or [])
    if not quiet:
        for error in registry.errors:
            print(f"warning: {error}", file=sys.stderr)
    return registry


def make_services(args: argparse.Namespace) -> dict[str, Any]:
    services: dict[str, Any] = {
        "allow_unsafe_pickle": bool(getattr(args, "allow_unsafe_pickle", False)),
    }
    try:
        from easel.models.manager import ModelManager
    except ImportError:
        return services
    services["models"] = ModelManager.from_environment()
    return services


def make_executor(args: argparse.Namespace, registry: Registry) -> Executor:
    cache = OutputCache(max_bytes=parse_size(getattr(args, "cache_size", None) or "2GB"))
    if getattr(args, "disk_cache", False):
        from easel.core.diskcache import DiskStore

        cache.disk = DiskStore(
            Path(args.cache_dir) if getattr(args, "cache_dir", None) else None,
            codecs=registry.codecs,
        )
    return Executor(
        registry,
        cache,
        output_dir=Path(getattr(args, "output_dir", None) or "output"),
        services=make_services(args),
        max_workers=getattr(args, "threads", 1) or 1,
    )


def parse_size(text: str) -> int:
    units = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
    cleaned = text.strip().upper().replace("IB", "B")
    number = cleaned.rstrip("KMGTB")
    unit = cleaned[len(number) :]
    try:
        return int(float(number) * units[unit])
    except (ValueError, KeyError):
        raise UsageError(f"cannot read size {text!r} (examples: 512MB, 2GB)") from None


def parse_value(text: str) -> Any:
    """A `--set` value: JSON when it parses (numbers, true, lists), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def runner_config(args: argparse.Namespace, **overrides: Any) -> Any:
    """What batch and cluster workers need to rebuild this command's executor."""
    from easel.batch.runner import RunnerConfig

    plugins = tuple(
        str(Path(p).resolve()) if p.endswith(".py") else p
        for p in (getattr(args, "plugin", None) or [])
    )
    return RunnerConfig(
        plugin_files=plugins,
        models_dir=os.environ.get("EASEL_MODELS_DIR"),
        allow_unsafe_pickle=bool(getattr(args, "allow_unsafe_pickle", False)),
        environ={k: v for k, v in os.environ.items() if k.startswith("EASEL_")},
        **overrides,
    )
