"""`easel serve --cluster`: queued runs execute on Dask workers; events and files come back."""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path
from typing import Any

from easel.batch.runner import RunnerConfig
from easel.core.executor import RunResult
from easel.core.roles import upload_inputs
from easel.core.status import NodeStatus, RunStatus
from easel.server.worker import ActiveRun, RunWorker

log = logging.getLogger("easel.server.cluster")

REMOTE_FOLDER = "cluster"


class ClusterRunWorker(RunWorker):
    """Like RunWorker, but each run goes to the cluster instead of this process's executor.

    Files written on a worker come back as bytes and are stored under
    OUTPUT_DIR/cluster/RUN_ID/, so nothing needs a shared disk; uploaded images (inputs
    drawn with the image_upload widget) travel the other way.
    """

    def __init__(
        self, *args: Any, cluster: Any, runner_config: RunnerConfig, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.cluster = cluster
        self.runner_config = runner_config
        self._client: Any = None
        self._client_lock = threading.Lock()

    def client(self) -> Any:
        from easel.batch.dask_backend import PLUGIN_NAME, make_worker_plugin

        with self._client_lock:
            if self._client is None:
                import distributed

                self._client = (
                    self.cluster
                    if isinstance(self.cluster, distributed.Client)
                    else distributed.Client(self.cluster)
                )
                self._client.register_plugin(
                    make_worker_plugin(self.runner_config), name=PLUGIN_NAME
                )
            return self._client

    def _inputs(self, workflow: dict[str, Any]) -> dict[str, bytes]:
        input_dir = Path(self.executor.services.get("input_dir") or "")
        shipped: dict[str, bytes] = {}
        for node_id, input_name in upload_inputs(workflow, self.executor.registry):
            name = workflow["nodes"][node_id].get("inputs", {}).get(input_name)
            if not isinstance(name, str):
                continue
            path = (input_dir / name).resolve()
            if path.is_file() and path.parent == input_dir.resolve():
                shipped[name] = path.read_bytes()
        return shipped

    def _run_blocking(self, run: dict[str, Any], active: ActiveRun) -> RunResult:
        from easel.batch.dask_backend import run_workflow_on_worker

        loop = self._loop
        assert loop is not None
        workflow = run["workflow"]
        self.executor.validate(workflow)  # refuse bad workflows here, with the usual errors
        client = self.client()
        topic = f"easel-run-{run['id']}-{uuid.uuid4().hex[:8]}"

        def on_message(event: Any) -> None:
            _, message = event
            loop.call_soon_threadsafe(self._deliver, active, dict(message))

        client.subscribe_topic(topic, on_message)
        try:
            future = client.submit(
                run_workflow_on_worker,
                workflow,
                run["id"],
                topic,
                self._inputs(workflow),
                pure=False,
                retries=2,
                key=f"easel-run-{run['id']}",
            )
            while True:
                if active.token.cancelled:
                    future.cancel()
                    return RunResult(
                        run["id"],
                        RunStatus.CANCELLED,
                        dict.fromkeys(active.nodes, NodeStatus.CANCELLED),
                        {},
                        {},
                    )
                try:
                    remote = future.result(timeout=0.25)
                    break
                except TimeoutError:
                    continue
        finally:
            client.unsubscribe_topic(topic)
        return self._store(run["id"], remote)

    def _store(self, run_id: str, remote: dict[str, Any]) -> RunResult:
        base = Path(REMOTE_FOLDER) / run_id
        root = self.executor.output_dir
        renamed: dict[str, str] = {}
        for name, data in remote["files"].items():
            target = root / base / name
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.part")
            tmp.write_bytes(data)
            tmp.replace(target)
            renamed[name] = (base / name).as_posix()
        ui = {}
        for node_id, entry in remote["ui"].items():
            if isinstance(entry, dict) and "files" in entry:
                entry = {**entry, "files": [renamed.get(f, f) for f in entry["files"]]}
            ui[node_id] = entry
        log.info("run %s ran on %s", run_id, remote.get("worker"))
        return RunResult.from_json({**remote, "run_id": run_id, "ui": ui})
