"""Sweep specs, items, manifests and contact sheets, and batches through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from easel.batch.manifest import read_manifest
from easel.batch.sweep import SweepError, make_items, parse_sweep

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = str(ROOT / "tests" / "cli" / "cli_plugin.py")


def test_sweep_specs(tmp_path):
    assert parse_sweep("s.seed=1,2,3").values == (1, 2, 3)
    assert parse_sweep("s.seed=3..1").values == (3, 2, 1)
    assert parse_sweep("s.cfg=1.5,x").values == (1.5, "x")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\n# a comment\na blue square\n")
    assert parse_sweep(f"p.text=@{prompts}").values == ("a red circle", "a blue square")
    for bad in ("s.seed", "seed=1", "s.seed=1..x", f"p.text=@{tmp_path / 'none.txt'}"):
        with pytest.raises(SweepError):
            parse_sweep(bad)


def test_grid_and_zip():
    a, b = parse_sweep("x.a=1,2"), parse_sweep("y.b=5,6")
    assert make_items([a, b]) == [
        {"x.a": 1, "y.b": 5},
        {"x.a": 1, "y.b": 6},
        {"x.a": 2, "y.b": 5},
        {"x.a": 2, "y.b": 6},
    ]
    assert make_items([a, b], zipped=True) == [{"x.a": 1, "y.b": 5}, {"x.a": 2, "y.b": 6}]
    with pytest.raises(SweepError, match="equal length"):
        make_items([a, parse_sweep("y.b=1,2,3")], zipped=True)


def easel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "easel", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


@pytest.fixture
def workflow(tmp_path) -> str:
    path = tmp_path / "wf.json"
    path.write_text(
        json.dumps(
            {
                "format": "easel.workflow",
                "version": 1,
                "nodes": {
                    "c": {"type": "Const", "inputs": {"value": 1}},
                    "a": {"type": "Add", "inputs": {"a": ["c", "value"], "b": 1}},
                    "s": {"type": "Show", "inputs": {"value": ["a", "sum"]}},
                },
            }
        )
    )
    return str(path)


def test_sweep_manifest_failure_and_resume(tmp_path, workflow):
    out = tmp_path / "out"
    first = easel(
        "run",
        workflow,
        "--plugin",
        PLUGIN,
        "--sweep",
        "c.value=1,2",
        "--sweep",
        "a.b=10,5000,30",
        "--output-dir",
        str(out),
        cwd=tmp_path,
    )
    assert first.returncode == 1  # one value is out of range: reported, the rest go on
    assert "batch: 6 run, 0 already done, 2 failed" in first.stderr
    assert "input 'b'" in first.stderr and "Traceback" not in first.stderr
    header, items = read_manifest(out / "manifest.jsonl")
    assert header["sweeps"] == ["c.value=1,2", "a.b=10,5000,30"] and header["items"] == 6
    assert [items[i]["params"] for i in range(6)] == [
        {"c.value": c, "a.b": b} for c in (1, 2) for b in (10, 5000, 30)
    ]
    assert [items[i]["status"] for i in range(6)] == ["succeeded", "failed", "succeeded"] * 2
    # Fix the bad value in the manifest's sweep and resume: only the failed items run.
    lines = (out / "manifest.jsonl").read_text().splitlines()
    head = json.loads(lines[0])
    head["sweeps"][1] = "a.b=10,50,30"
    (out / "manifest.jsonl").write_text("\n".join([json.dumps(head), *lines[1:]]) + "\n")
    again = easel(
        "run",
        "--plugin",
        PLUGIN,
        "--resume",
        str(out / "manifest.jsonl"),
        "--output-dir",
        str(out),
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    assert "batch: 2 run, 4 already done, 0 failed" in again.stderr
    _, items = read_manifest(out / "manifest.jsonl")
    assert all(items[i]["status"] == "succeeded" for i in range(6))
    nothing = easel(
        "run",
        "--plugin",
        PLUGIN,
        "--resume",
        str(out / "manifest.jsonl"),
        "--output-dir",
        str(out),
        cwd=tmp_path,
    )
    assert "batch: 0 run, 6 already done, 0 failed" in nothing.stderr


def test_workers_match_in_process_results(tmp_path, workflow):
    def values(workers: str) -> list:
        out = tmp_path / f"out{workers}"
        result = easel(
            "run",
            workflow,
            "--plugin",
            PLUGIN,
            "--sweep",
            "c.value=1..5",
            "--zip",
            "--sweep",
            "a.b=1..5",
            "--workers",
            workers,
            "--json",
            "--output-dir",
            str(out),
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        _, items = read_manifest(out / "manifest.jsonl")
        return [(items[i]["params"], items[i]["status"]) for i in sorted(items)]

    assert values("1") == values("2")


def test_contact_sheet_labels_each_item(tmp_path):
    from easel.batch.contact_sheet import write_contact_sheet

    files = []
    for i, color in enumerate([(255, 0, 0), (0, 0, 255), (0, 255, 0)]):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (32, 32), color).save(path)
        files.append(str(path))
    results = [
        {
            "index": i,
            "params": {"s.seed": i},
            "status": "succeeded",
            "files": [f],
            "scores": {"clip.score": 20.0 + i},
        }
        for i, f in enumerate(files)
    ]
    results.append({"index": 3, "params": {"s.seed": 3}, "status": "failed", "files": []})
    sheet = Image.open(write_contact_sheet(results, tmp_path / "grid.png"))
    assert sheet.size[0] > 2 * 192 and sheet.size[1] > 2 * 192
    # The first thumbnail is the red image, scaled up.
    assert sheet.getpixel((8 + 96, 8 + 96)) == (255, 0, 0)
    assert sheet.getpixel((8 + 200 + 96, 8 + 96)) == (0, 0, 255)
