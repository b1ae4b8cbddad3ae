"""Running batch items on a Dask distributed cluster; each worker keeps one Easel runner.

Dask is an optional extra (`pip install easel[distributed]`); nothing else imports this.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from easel.batch.backends import Item, OnDone, in_order
from easel.batch.runner import ItemRunner, RunnerConfig
from easel.core.plugins import current_registry
from easel.core.roles import checkpoint_inputs
from easel.core.status import RunStatus

RUNNER_ATTRIBUTE = "easel_runner"
PLUGIN_NAME = "easel-runner"


def _require_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise RuntimeError("--cluster needs Dask: pip install 'easel[distributed]'") from None
    return distributed


def make_worker_plugin(config: RunnerConfig) -> Any:
    """A Dask WorkerPlugin that gives each worker one runner: models load once per worker."""
    distributed = _require_distributed()

    class EaselRunnerPlugin(distributed.WorkerPlugin):  # type: ignore[misc, name-defined]
        name = PLUGIN_NAME

        def __init__(self, config: RunnerConfig) -> None:
            self.config = config

        def setup(self, worker: Any) -> None:
            setattr(worker, RUNNER_ATTRIBUTE, ItemRunner(self.config))

    return EaselRunnerPlugin(config)


def run_item_on_worker(
    workflow: dict[str, Any], index: int, params: dict[str, Any]
) -> dict[str, Any]:
    """The task Dask runs: the worker's runner runs one item."""
    from distributed import get_worker

    worker = get_worker()
    runner = getattr(worker, RUNNER_ATTRIBUTE, None)
    if runner is None:  # a worker that joined before the plugin reached it
        raise RuntimeError("this Dask worker has no Easel runner")
    return runner.run(workflow, index, params)


def _checkpoints(workflow: dict[str, Any], params: dict[str, Any]) -> tuple[str, ...]:
    """The checkpoints an item loads (its checkpoint inputs: see easel.core.roles)."""
    names = []
    for node_id, name in checkpoint_inputs(workflow, current_registry()):
        literal = workflow["nodes"][node_id].get("inputs", {}).get(name)
        names.append(str(params.get(f"{node_id}.{name}", literal)))
    return tuple(sorted(names))


def run_cluster(
    address: Any,
    config: RunnerConfig,
    workflow: dict[str, Any],
    items: list[Item],
    on_done: OnDone,
    retries: int = 3,
) -> Iterator[dict[str, Any]]:
    """Send items to the cluster at `address` (or a Client); yield results in item order.

    Items that need the same checkpoint go to the same worker when several models are
    in play (each worker loads a model once); a lost worker's items are retried by Dask.
    """
    distributed = _require_distributed()
    client = address if isinstance(address, distributed.Client) else distributed.Client(address)
    own_client = client is not address
    try:
        client.register_plugin(make_worker_plugin(config), name=PLUGIN_NAME)
        workers = sorted(client.scheduler_info()["workers"])
        models = sorted({_checkpoints(workflow, params) for _, params in items})
        home = (
            {model: workers[i % len(workers)] for i, model in enumerate(models)}
            if len(models) > 1 and workers
            else {}
        )
        batch_token = uuid.uuid4().hex
        futures = []
        for index, params in items:
            preferred = home.get(_checkpoints(workflow, params))
            placement = {"workers": [preferred], "allow_other_workers": True} if preferred else {}
            futures.append(
                client.submit(
                    run_item_on_worker,
                    workflow,
                    index,
                    params,
                    pure=False,
                    retries=retries,
                    key=f"easel-item-{index}-{batch_token}",
                    **placement,
                )
            )
        by_key = {
            future.key: (index, params)
            for future, (index, params) in zip(futures, items, strict=True)
        }
        order = [index for index, _ in items]
        done: dict[int, dict[str, Any]] = {}
        cursor = 0
        for future in distributed.as_completed(futures):
            index, params = by_key[future.key]
            try:
                result = future.result()
            except Exception as exc:
                result = {
                    "index": index,
                    "params": params,
                    "status": RunStatus.FAILED,
                    "files": [],
                    "scores": {},
                    "error": f"{type(exc).__name__}: {exc}",
                }
            on_done(result)
            done[index] = result
            ready, cursor = in_order(done, order, cursor)
            yield from ready
    finally:
        if own_client:
            client.close()


def run_workflow_on_worker(
    workflow: dict[str, Any], run_id: str, topic: str, inputs: dict[str, bytes]
) -> dict[str, Any]:
    """The task for a server run: run on this worker, stream events on `topic`, and return
    the result with the bytes of every file written (the server keeps them)."""
    import tempfile
    from pathlib import Path

    from distributed import get_worker

    worker = get_worker()
    runner: ItemRunner | None = getattr(worker, RUNNER_ATTRIBUTE, None)
    if runner is None:
        raise RuntimeError("this Dask worker has no Easel runner")

    def on_event(event: Any) -> None:
        message = event.to_json()
        message.pop("traceback", None)
        worker.log_event(topic, message)

    with tempfile.TemporaryDirectory(prefix="easel-run-") as scratch:
        input_dir = Path(scratch) / "input"
        input_dir.mkdir()
        for name, data in inputs.items():
            (input_dir / name).write_bytes(data)
        out_dir = Path(scratch) / "output"
        result = runner.executor.run(
            workflow,
            on_event=on_event,
            run_id=run_id,
            output_dir=out_dir,
            services={"workflow": workflow, "input_dir": input_dir},
        )
        files = {}
        for ui in result.ui.values():
            for name in ui.get("files", []) if isinstance(ui, dict) else []:
                path = out_dir / name
                if path.is_file():
                    files[name] = path.read_bytes()
    report = result.to_json()
    return {
        "status": report["status"],
        "node_status": report["node_status"],
        "ui": result.ui,
        "seconds": result.seconds,
        "files": files,
        "worker": runner.where,
        "failures": report["failures"],
        "timings": report["timings"],
    }
