"""The run queue and history in SQLite: survives a killed server, re-queues the interrupted run."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from easel.core.status import RunStatus
from easel.server import fastjson

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    RunStatus.QUEUED,
    RunStatus.RUNNING,
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
)
FINAL = (SUCCEEDED, FAILED, CANCELLED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    workflow TEXT NOT NULL,
    client_id TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    nodes TEXT,
    outputs TEXT,
    error TEXT,
    summary TEXT,
    priority INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, seq);
"""


class RunQueue:
    """Runs in submission order; every change is committed before it is reported."""

    def __init__(self, path: Path, history_limit: int = 10_000) -> None:
        self.path = path
        self.history_limit = history_limit
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(runs)")}
        if "summary" not in columns:  # a database from an earlier version
            self._db.execute("ALTER TABLE runs ADD COLUMN summary TEXT")
        if "priority" not in columns:
            self._db.execute("ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- changes -------------------------------------------------------------------
    def add(
        self,
        run_id: str,
        workflow: dict[str, Any],
        client_id: str | None = None,
        front: bool = False,
    ) -> dict[str, Any]:
        """Queue a run; `front` puts it before every run queued without (ComfyUI's
        `front: true`), in submission order among those sent to the front."""
        with self._lock:
            self._db.execute(
                "INSERT INTO runs (id, status, workflow, client_id, created, priority) "
                "VALUES (?,?,?,?,?,?)",
                (
                    run_id,
                    QUEUED,
                    fastjson.dumps(workflow),
                    client_id,
                    time.time(),
                    -1 if front else 0,
                ),
            )
        run = self.get(run_id)
        assert run is not None
        return run

    def claim_next(
        self, with_workflow: Callable[[str], bool] | bool = True
    ) -> dict[str, Any] | None:
        """Mark the next queued run (front-of-queue runs first, then the oldest) as running and
        return it (with its workflow, unless `with_workflow(run_id)` says it is not needed)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT id FROM runs WHERE status=? ORDER BY priority, seq LIMIT 1", (QUEUED,)
                ).fetchone()
                if row is None:
                    self._db.execute("COMMIT")
                    return None
                self._db.execute(
                    "UPDATE runs SET status=?, started=?, attempts=attempts+1 WHERE id=?",
                    (RUNNING, time.time(), row["id"]),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        wanted = with_workflow(row["id"]) if callable(with_workflow) else with_workflow
        return self.get(row["id"], with_workflow=wanted)

    def finish(
        self,
        run_id: str,
        status: str,
        nodes: dict[str, Any],
        outputs: dict[str, Any],
        error: Any = None,
    ) -> None:
        # default=str: whatever a plugin put there, the run is stored and never left running
        outputs_text = fastjson.dumps(outputs, default=str)
        summary = summarise(nodes, outputs, len(outputs_text))
        nodes_text = fastjson.dumps(nodes, default=str)
        with self._lock:
            self._db.execute(
                "UPDATE runs SET status=?, finished=?, nodes=?, outputs=?, error=?, summary=? "
                "WHERE id=?",
                (
                    status,
                    time.time(),
                    nodes_text,
                    outputs_text,
                    json.dumps(error, default=str) if error is not None else None,
                    json.dumps(summary, default=str),
                    run_id,
                ),
            )
        self._trim()

    def retry(self, run_id: str) -> None:
        """Queue a run again after its worker died; its place in line is kept (first)."""
        self.requeue(run_id, count_attempt=True)

    def requeue(self, run_id: str, count_attempt: bool = True) -> None:
        """Back to queued; without `count_attempt` the interrupted start does not count."""
        with self._lock:
            self._db.execute(
                "UPDATE runs SET status=?, started=NULL, attempts=attempts-? WHERE id=? "
                "AND status=?",
                (QUEUED, 0 if count_attempt else 1, run_id, RUNNING),
            )

    def cancel_queued(self, run_id: str) -> bool:
        """Cancel a run that has not started; False if it is not queued."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE runs SET status=?, finished=?, error=? WHERE id=? AND status=?",
                (
                    CANCELLED,
                    time.time(),
                    json.dumps({"message": "cancelled before it started"}),
                    run_id,
                    QUEUED,
                ),
            )
            return cursor.rowcount == 1

    def requeue_interrupted(self, max_attempts: int = 3) -> tuple[list[str], list[str]]:
        """Runs left `running` by a server that died: queue them again, first in line, unless
        they were started `max_attempts` times already (then they fail, so a run that brings
        the server down can never keep it from starting). Returns (re-queued, failed)."""
        error = json.dumps(
            {
                "message": f"the run was interrupted {max_attempts} times (the "
                "server or its worker process stopped during it); "
                "it was not started again"
            }
        )
        with self._lock:
            rows = self._db.execute(
                "SELECT id, attempts FROM runs WHERE status=?", (RUNNING,)
            ).fetchall()
            self._db.execute(
                "UPDATE runs SET status=?, finished=?, error=? WHERE status=? AND attempts>=?",
                (FAILED, time.time(), error, RUNNING, max_attempts),
            )
            self._db.execute(
                "UPDATE runs SET status=?, started=NULL WHERE status=?", (QUEUED, RUNNING)
            )
        return (
            [row["id"] for row in rows if row["attempts"] < max_attempts],
            [row["id"] for row in rows if row["attempts"] >= max_attempts],
        )

    def _trim(self) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM runs WHERE status IN (?,?,?) AND seq <= "
                "(SELECT seq FROM runs WHERE status IN (?,?,?) ORDER BY seq DESC "
                "LIMIT 1 OFFSET ?)",
                (*FINAL, *FINAL, self.history_limit),
            )

    # -- reading -------------------------------------------------------------------
    def get(self, run_id: str, with_workflow: bool = False) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return _row(row, with_workflow) if row is not None else None

    def page(
        self, limit: int = 50, before: int | None = None, status: str | None = None
    ) -> tuple[list[dict[str, Any]], int | None, int]:
        """Newest first: (runs, cursor for the next page or None, total matching)."""
        where: list[str] = []
        params: list[Any] = []
        if status:
            where.append("status=?")
            params.append(status)
        total_sql = "SELECT COUNT(*) FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            total = self._db.execute(total_sql, params).fetchone()[0]
            if before is not None:
                where.append("seq<?")
                params.append(before)
            sql = f"SELECT {_LIST_COLUMNS} FROM runs"
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY seq DESC LIMIT ?"
            rows = self._db.execute(sql, [*params, limit + 1]).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = rows[-1]["seq"] if more and rows else None
        return [_summary_row(row) for row in rows], cursor, total

    def position(self, run_id: str) -> int | None:
        """0 for the next run to start, None if the run is not queued."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq FROM runs WHERE id=? AND status=?", (run_id, QUEUED)
            ).fetchone()
            if row is None:
                return None
            return int(
                self._db.execute(
                    "SELECT COUNT(*) FROM runs WHERE status=? AND seq<?", (QUEUED, row["seq"])
                ).fetchone()[0]
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) AS n FROM runs GROUP BY status")
            found = {row["status"]: row["n"] for row in rows}
        return {status: found.get(status, 0) for status in (QUEUED, RUNNING, *FINAL)}


LIST_OUTPUTS_MAX = 16 * 1024
_LIST_COLUMNS = (
    "seq, id, status, client_id, created, started, finished, attempts, error, "
    f"summary, CASE WHEN length(outputs) <= {LIST_OUTPUTS_MAX} THEN outputs END "
    "AS outputs"
)


def summarise(nodes: dict[str, Any], outputs: dict[str, Any], outputs_size: int) -> dict[str, Any]:
    """What a list of runs shows: node counts by state and the files made (not every node)."""
    counts: dict[str, int] = {}
    for entry in nodes.values():
        state = entry.get("status", "?") if isinstance(entry, dict) else "?"
        counts[state] = counts.get(state, 0) + 1
    files = [
        f
        for ui in outputs.values()
        if isinstance(ui, dict)
        for f in (ui.get("files") or [])
        if isinstance(f, str)
    ]
    return {
        "nodes": len(nodes),
        "states": counts,
        "files": files[:100],
        "outputs_bytes": outputs_size,
    }


def _summary_row(row: sqlite3.Row) -> dict[str, Any]:
    """A run in a list: no node states; its outputs only when small (else see `summary`)."""
    out: dict[str, Any] = {
        "id": row["id"],
        "seq": row["seq"],
        "status": row["status"],
        "client_id": row["client_id"],
        "created": row["created"],
        "started": row["started"],
        "finished": row["finished"],
        "attempts": row["attempts"],
        "error": json.loads(row["error"]) if row["error"] else None,
        "summary": json.loads(row["summary"]) if row["summary"] else None,
        "outputs": json.loads(row["outputs"]) if row["outputs"] else {},
    }
    if out["error"] and "failures" in out["error"]:
        out["error"] = {k: v for k, v in out["error"].items() if k != "failures"}
    return out


def _row(row: sqlite3.Row, with_workflow: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row["id"],
        "seq": row["seq"],
        "status": row["status"],
        "client_id": row["client_id"],
        "created": row["created"],
        "started": row["started"],
        "finished": row["finished"],
        "attempts": row["attempts"],
        "nodes": fastjson.loads(row["nodes"]) if row["nodes"] else {},
        "outputs": fastjson.loads(row["outputs"]) if row["outputs"] else {},
        "error": json.loads(row["error"]) if row["error"] else None,
        "summary": json.loads(row["summary"]) if row["summary"] else None,
    }
    if with_workflow:
        out["workflow"] = fastjson.loads(row["workflow"])
    return out
