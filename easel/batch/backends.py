"""Where batch items run: this process, N local worker processes, or a Dask cluster.

Every backend yields results in item order while items finish in any order.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from easel.batch.runner import ItemRunner, RunnerConfig
from easel.core.status import RunStatus

Item = tuple[int, dict[str, Any]]
OnDone = Callable[[dict[str, Any]], None]


def in_order(
    done: dict[int, dict[str, Any]], order: list[int], cursor: int
) -> tuple[list[dict[str, Any]], int]:
    """Pop the results that can be emitted in order from `cursor` on."""
    ready = []
    while cursor < len(order) and order[cursor] in done:
        ready.append(done.pop(order[cursor]))
        cursor += 1
    return ready, cursor


def run_here(
    config: RunnerConfig, workflow: dict[str, Any], items: list[Item], on_done: OnDone
) -> Iterator[dict[str, Any]]:
    runner = ItemRunner(config)
    for index, params in items:
        result = runner.run(workflow, index, params)
        on_done(result)
        yield result


_WORKER: ItemRunner | None = None


def _init_worker(config: RunnerConfig) -> None:
    global _WORKER  # the worker process's own runner, built once per process
    _WORKER = ItemRunner(config)


def _run_in_worker(workflow: dict[str, Any], index: int, params: dict[str, Any]) -> dict[str, Any]:
    assert _WORKER is not None
    return _WORKER.run(workflow, index, params)


def run_processes(
    config: RunnerConfig, workflow: dict[str, Any], items: list[Item], workers: int, on_done: OnDone
) -> Iterator[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")  # never fork a process holding torch
    order = [index for index, _ in items]
    done: dict[int, dict[str, Any]] = {}
    cursor = 0
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(config,)
    ) as pool:
        pending: dict[Future[dict[str, Any]], Item] = {
            pool.submit(_run_in_worker, workflow, index, params): (index, params)
            for index, params in items
        }
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                index, params = pending.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # the worker process died
                    result = {
                        "index": index,
                        "params": params,
                        "status": RunStatus.FAILED,
                        "files": [],
                        "scores": {},
                        "error": f"worker lost: {exc}",
                    }
                on_done(result)
                done[index] = result
            ready, cursor = in_order(done, order, cursor)
            yield from ready
