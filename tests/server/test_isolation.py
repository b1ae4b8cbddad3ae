"""Nothing a node does stops the server: exiting, hanging, leaking and badly written plugin
nodes, run through a real `easel serve` process (its runs in a supervised worker process)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.serverproc import BAD_PLUGIN, Server, free_port

GRACE = 1.0
EXTRA = ("--plugin", str(BAD_PLUGIN), "--cancel-grace", str(GRACE))  # default: 2 retries
FAST = (*EXTRA, "--retries", "1")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    process = Server(tmp_path_factory.mktemp("isolation") / "data", free_port(), FAST)
    try:
        yield process
    finally:
        process.stop()


def echo_ok(server: Server, value: int = 1) -> None:
    """The queue still works: a quick run succeeds."""
    run = server.wait_run(server.submit({"echo": {"type": "TestEcho", "inputs": {"value": value}}}))
    assert run["status"] == "succeeded" and run["outputs"]["echo"] == {"value": value}


def worker_pid(server: Server) -> int:
    run = server.wait_run(server.submit({"pid": {"type": "WorkerPid"}}))
    return int(run["outputs"]["pid"]["pid"])


def test_runs_execute_in_a_worker_process_not_the_server(server: Server) -> None:
    assert worker_pid(server) != server.process.pid


def test_node_that_exits_the_process_is_retried_then_failed_with_the_reason(server: Server) -> None:
    run = server.wait_run(server.submit({"bye": {"type": "BadExit", "inputs": {"code": 3}}}))
    assert run["status"] == "failed"
    assert run["attempts"] == 2  # the first start and 1 retry (--retries 1)
    message = run["error"]["message"]
    assert "exited with code 3" in message and "'bye' (BadExit)" in message
    assert "gave up after 2 attempts" in message
    assert server.process.poll() is None
    echo_ok(server)


def test_worker_killed_like_out_of_memory_is_retried_and_the_server_stays_up(
    server: Server,
) -> None:
    run = server.wait_run(
        server.submit({"leak": {"type": "BadLeak", "inputs": {"megabytes": 8, "die": True}}})
    )
    assert run["status"] == "failed" and run["attempts"] == 2
    assert "SIGKILL" in run["error"]["message"]
    echo_ok(server)


def test_leaked_memory_goes_with_a_restarted_worker(server: Server) -> None:
    first = server.wait_run(
        server.submit({"leak": {"type": "BadLeak", "inputs": {"megabytes": 16}}})
    )
    second = server.wait_run(
        server.submit({"leak": {"type": "BadLeak", "inputs": {"megabytes": 16}}})
    )
    assert first["outputs"]["leak"]["pid"] == second["outputs"]["leak"]["pid"]
    assert second["outputs"]["leak"]["leaked_mb"] >= 32  # the worker keeps what nodes leak
    server.wait_run(server.submit({"bye": {"type": "BadExit", "inputs": {"code": 0}}}))
    after = server.wait_run(
        server.submit({"leak": {"type": "BadLeak", "inputs": {"megabytes": 16}}})
    )
    assert after["outputs"]["leak"]["pid"] != first["outputs"]["leak"]["pid"]
    assert after["outputs"]["leak"]["leaked_mb"] == 16


@pytest.mark.parametrize(
    ("how", "name"), [("exit", "SystemExit"), ("interrupt", "KeyboardInterrupt")]
)
def test_system_exit_and_keyboard_interrupt_fail_the_run_once(
    server: Server, how: str, name: str
) -> None:
    run = server.wait_run(
        server.submit({"stop": {"type": "BadSystemExit", "inputs": {"how": how}}})
    )
    assert run["status"] == "failed" and run["attempts"] == 1
    assert run["error"]["message"] == (
        f"node 'stop' (BadSystemExit) raised {name}; nodes must not end the process"
    )
    echo_ok(server)


def test_hanging_node_is_cancelled_within_the_grace_period_and_the_queue_moves_on(
    server: Server,
) -> None:
    hung = server.submit({"hang": {"type": "BadHang", "inputs": {"seconds": 600}}})
    behind = server.submit({"echo": {"type": "TestEcho", "inputs": {"value": 42}}})
    run = server.wait_run(hung, until=("running",))
    deadline = time.monotonic() + 30
    while run["nodes"].get("hang", {}).get("status") != "running":
        assert time.monotonic() < deadline, run
        time.sleep(0.05)
        run = server.get(f"/api/runs/{hung}")
    started = time.monotonic()
    status, body = server.call("DELETE", f"/api/runs/{hung}")
    assert (status, body["status"]) == (202, "cancelling")
    run = server.wait_run(hung)
    took = time.monotonic() - started
    assert run["status"] == "cancelled" and run["nodes"]["hang"]["status"] == "cancelled"
    assert "did not stop within 1 s" in run["error"]["message"]
    assert took < GRACE + 5, took
    assert server.wait_run(behind)["status"] == "succeeded"


def test_slow_node_that_reports_progress_is_cancelled_cooperatively(server: Server) -> None:
    pid = worker_pid(server)
    run_id = server.submit(
        {
            "slow": {"type": "TestSlow", "inputs": {"value": 1, "steps": 500, "delay": 0.02}},
            "save": {"type": "TestSave", "inputs": {"value": ["slow", "value"]}},
        }
    )
    deadline = time.monotonic() + 30
    while not server.get(f"/api/runs/{run_id}")["nodes"].get("slow", {}).get("step"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert server.call("DELETE", f"/api/runs/{run_id}")[0] == 202
    run = server.wait_run(run_id)
    assert run["status"] == "cancelled" and run["error"]["message"] == "cancelled by the user"
    assert worker_pid(server) == pid  # no restart was needed


def test_non_serialisable_ui_fails_its_node_clearly(server: Server) -> None:
    run = server.wait_run(server.submit({"bad": {"type": "BadUi"}}))
    assert run["status"] == "failed"
    assert run["nodes"]["bad"]["status"] == "failed"
    [failure] = run["error"]["failures"]
    assert failure["node"] == "bad" and "not JSON-serialisable" in failure["message"]
    echo_ok(server)


def test_errors_shown_to_clients_carry_no_absolute_server_paths(server: Server) -> None:
    run = server.wait_run(server.submit({"bad": {"type": "BadPath"}}))
    message = run["error"]["message"]
    assert "missing.png" in message and "<input>/missing.png" in message
    for private in (str(Path.home()), str(Path(server.output()).parent), os.getcwd()):
        assert private not in message, message
        assert private not in run["error"]["failures"][0]["message"]
    assert "<input>" in server.output() or "missing.png" in message


def test_run_list_carries_summaries_not_node_states(server: Server) -> None:
    echo_ok(server, 7)
    page = server.get("/api/runs?limit=1")
    [run] = page["runs"]
    assert "nodes" not in run
    assert run["summary"]["nodes"] == 1 and run["summary"]["states"] == {"executed": 1}
    assert run["outputs"] == {"echo": {"value": 7}}


def test_poisoned_run_never_stops_the_server_from_starting(tmp_path: Path) -> None:
    """kill -9 the server while the same run is running, three times: the third restart
    fails that run instead of starting it again, and the queue goes on."""
    data = tmp_path / "data"
    port = free_port()
    server = Server(data, port, EXTRA)
    hung = server.submit({"hang": {"type": "BadHang", "inputs": {"seconds": 600}}})
    behind = server.submit({"echo": {"type": "TestEcho", "inputs": {"value": 5}}})
    try:
        for _ in range(3):
            run = server.wait_run(hung, until=("running",))
            server.stop(signal.SIGKILL)
            server = Server(data, port, EXTRA)
        run = server.wait_run(hung)
        assert run["status"] == "failed" and run["attempts"] == 3
        assert "interrupted 3 times" in run["error"]["message"]
        assert server.wait_run(behind)["status"] == "succeeded"
    finally:
        server.stop()


def test_a_normal_stop_requeues_the_running_run_without_counting_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    server = Server(data, port, EXTRA)
    try:
        hung = server.submit({"hang": {"type": "BadHang", "inputs": {"seconds": 600}}})
        server.wait_run(hung, until=("running",))
        server.stop(signal.SIGTERM)
        assert server.process.returncode == 0, server.output()
        server = Server(data, port, EXTRA)
        run = server.wait_run(hung, until=("running",))
        assert run["attempts"] == 1
        assert server.call("DELETE", f"/api/runs/{hung}")[0] == 202
        assert server.wait_run(hung)["status"] == "cancelled"
    finally:
        server.stop()
