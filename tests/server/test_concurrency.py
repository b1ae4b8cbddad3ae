"""50 concurrent clients submit 500 runs: every one is stored, run and reported, none lost."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.server.conftest import echo

pytestmark = pytest.mark.asyncio

CLIENTS, RUNS_EACH = 50, 10


async def test_500_runs_from_50_clients(client) -> None:
    async def one_client(number: int) -> list[tuple[str, int]]:
        submitted = []
        for i in range(RUNS_EACH):
            value = number * 1000 + i
            response = await client.post(
                "/api/runs", json={"workflow": echo(value), "client_id": f"c{number}"}
            )
            assert response.status == 201, await response.text()
            submitted.append(((await response.json())["id"], value))
        return submitted

    batches = await asyncio.gather(*(one_client(n) for n in range(CLIENTS)))
    submitted = dict(pair for batch in batches for pair in batch)
    assert len(submitted) == CLIENTS * RUNS_EACH

    deadline = time.monotonic() + 120
    while True:
        body = await (await client.get("/api/runs?limit=1")).json()
        if body["counts"]["succeeded"] == len(submitted) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert body["counts"] == {
        "queued": 0,
        "running": 0,
        "succeeded": 500,
        "failed": 0,
        "cancelled": 0,
    }

    seen: dict[str, int] = {}
    cursor = None
    while True:
        url = "/api/runs?limit=200" + (f"&before={cursor}" if cursor else "")
        page = await (await client.get(url)).json()
        for run in page["runs"]:
            seen[run["id"]] = run["outputs"]["echo"]["value"]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == submitted
