"""Runs one batch item in whatever process holds the runner: local, worker process, Dask."""

from __future__ import annotations

import copy
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easel.core.cache import OutputCache
from easel.core.executor import Executor
from easel.core.graph import WorkflowError
from easel.core.plugins import load_plugins
from easel.core.status import RunStatus
from easel.workflow_edit import EditError, set_input


@dataclass(frozen=True)
class RunnerConfig:
    """What a runner needs to build its executor; plain data so it travels to workers."""

    output_dir: str = "output"
    plugin_files: tuple[str, ...] = ()
    models_dir: str | None = None
    allow_unsafe_pickle: bool = False
    cache_bytes: int = 2 * 1024**3
    environ: dict[str, str] = field(default_factory=dict)
    torch_threads: int | None = None  # per worker; None leaves torch's default


def item_dir_name(index: int) -> str:
    return f"item-{index:04d}"


class ItemRunner:
    """Keeps one executor (its cache and loaded models) for every item it runs."""

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        os.environ.update(config.environ)
        if config.models_dir:
            os.environ["EASEL_MODELS_DIR"] = config.models_dir
        if config.allow_unsafe_pickle:
            os.environ["EASEL_ALLOW_UNSAFE_PICKLE"] = "1"
        if config.torch_threads:
            import torch

            torch.set_num_threads(config.torch_threads)
        registry = load_plugins(list(config.plugin_files))
        services: dict[str, Any] = {"allow_unsafe_pickle": config.allow_unsafe_pickle}
        try:
            from easel.models.manager import ModelManager
        except ImportError:
            pass
        else:
            services["models"] = ModelManager.from_environment()
        self.executor = Executor(
            registry,
            OutputCache(config.cache_bytes),
            output_dir=config.output_dir,
            services=services,
        )
        self.where = f"{socket.gethostname()}:{os.getpid()}"

    def run(self, workflow: dict[str, Any], index: int, params: dict[str, Any]) -> dict[str, Any]:
        """Run one item; never raises: failures come back in the result."""
        started = time.perf_counter()
        result: dict[str, Any] = {
            "index": index,
            "params": params,
            "status": RunStatus.FAILED,
            "files": [],
            "scores": {},
            "error": None,
            "worker": self.where,
        }
        item_workflow = copy.deepcopy(workflow)
        out_dir = Path(self.config.output_dir) / item_dir_name(index)
        try:
            for target, value in params.items():
                set_input(item_workflow, target, value)
            run = self.executor.run(
                item_workflow,
                output_dir=out_dir,
                keep_values=True,
                services={"workflow": item_workflow},
            )
        except (WorkflowError, EditError) as exc:
            result["error"] = str(exc)
        except Exception as exc:  # a bug in one item must not lose the batch
            result["error"] = f"{type(exc).__name__}: {exc}"
        else:
            result["status"] = str(run.status)
            result["files"] = [
                str(out_dir / f)
                for ui in run.ui.values()
                if isinstance(ui, dict)
                for f in ui.get("files", [])
            ]
            result["scores"] = collect_scores(run.values, run.ui)
            result["nodes"] = {node: str(status) for node, status in run.node_status.items()}
            if run.failures:
                result["error"] = "; ".join(str(f) for f in run.failures)
        result["seconds"] = round(time.perf_counter() - started, 4)
        result["finished_at"] = time.time()
        return result


def _plain_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def collect_scores(values: dict[str, dict[str, Any]], ui: dict[str, Any]) -> dict[str, Any]:
    """Numbers worth a column in the manifest: outputs and ui entries named like a score."""
    scores: dict[str, Any] = {}
    sources = [*values.items(), *((n, u) for n, u in ui.items() if isinstance(u, dict))]
    for node_id, outputs in sources:
        for name, value in outputs.items():
            if "score" not in name.lower():
                continue
            if hasattr(value, "tolist"):
                value = value.tolist()
            if _plain_number(value) or (
                isinstance(value, list) and value and all(_plain_number(v) for v in value)
            ):
                scores[f"{node_id}.{name}"] = value
    return scores
