"""The command line end to end, in subprocesses: exit codes, messages, caching, plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = str(Path(__file__).with_name("cli_plugin.py"))


def easel(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "easel", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=120,
    )


def write(tmp_path: Path, nodes: dict, name: str = "wf.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"format": "easel.workflow", "version": 1, "nodes": nodes}))
    return str(path)


GOOD = {
    "noise": {"type": "Noise", "inputs": {"seed": 1}},
    "mean": {"type": "Mean", "inputs": {"array": ["noise", "array"]}},
    "add": {"type": "Add", "inputs": {"a": ["mean", "value"], "b": 1}},
    "show": {"type": "Show", "inputs": {"value": ["add", "sum"]}},
}


def assert_clean_error(result: subprocess.CompletedProcess[str], code: int, *needles: str):
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_validate_and_run_good_workflow(tmp_path):
    wf = write(tmp_path, GOOD)
    valid = easel("validate", wf, "--plugin", PLUGIN, cwd=tmp_path)
    assert valid.returncode == 0 and "ok: 4 nodes" in valid.stdout
    run = easel("run", wf, "--plugin", PLUGIN, "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["status"] == "succeeded" and 1.0 < report["ui"]["show"]["value"] < 2.0
    assert "[4/4] show (Show) done" in run.stderr  # plain progress lines off a terminal


@pytest.mark.parametrize(
    ("nodes", "needles"),
    [
        ({"x": {"type": "Shwo"}}, ["node 'x'", "unknown node type 'Shwo'", "did you mean 'Show'"]),
        ({"s": {"type": "Show"}}, ["node 's' (Show), input 'value'", "missing required input"]),
        (
            {"s": {"type": "Show", "inputs": {"value": ["gone", "value"]}}},
            ["input 'value'", "missing node 'gone'"],
        ),
        (
            {"c": {"type": "Const"}, "s": {"type": "Show", "inputs": {"value": ["c", "nope"]}}},
            ["no output 'nope'"],
        ),
        (
            {"n": {"type": "Noise"}, "s": {"type": "Show", "inputs": {"value": ["n", "array"]}}},
            ["expects FLOAT", "IMAGE"],
        ),
        (
            {
                "c": {"type": "Const", "inputs": {"value": "abc"}},
                "s": {"type": "Show", "inputs": {"value": ["c", "value"]}},
            },
            ["node 'c' (Const)"],
        ),
        (
            {
                "c": {"type": "Const"},
                "a": {"type": "Add", "inputs": {"a": ["c", "value"], "b": 1e6}},
                "s": {"type": "Show", "inputs": {"value": ["a", "sum"]}},
            },
            ["input 'b'", "<= 1000"],
        ),
        (
            {
                "a": {"type": "Add", "inputs": {"a": ["b", "sum"]}},
                "b": {"type": "Add", "inputs": {"a": ["a", "sum"]}},
                "s": {"type": "Show", "inputs": {"value": ["a", "sum"]}},
            },
            ["cycle: "],
        ),
        ({"c": {"type": "Const"}}, ["no output node"]),
    ],
)
def test_invalid_workflows_exit_2_with_located_messages(tmp_path, nodes, needles):
    wf = write(tmp_path, nodes)
    for command in ("validate", "run"):
        assert_clean_error(easel(command, wf, "--plugin", PLUGIN, cwd=tmp_path), 2, *needles)


def test_not_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "easel.workflow",\n "nodes": {]\n}')
    assert_clean_error(easel("run", str(bad), cwd=tmp_path), 2, "not valid JSON", "line 2")
    assert_clean_error(
        easel("run", str(tmp_path / "nope.json"), cwd=tmp_path), 2, "no such workflow file"
    )


def test_unknown_top_level_key(tmp_path):
    path = tmp_path / "wf.json"
    path.write_text(
        json.dumps({"format": "easel.workflow", "version": 1, "nodes": {}, "extras": 1})
    )
    assert_clean_error(easel("validate", str(path), cwd=tmp_path), 2, "unknown key 'extras'")


def test_bad_arguments_exit_2(tmp_path):
    wf = write(tmp_path, GOOD)
    assert_clean_error(
        easel("run", wf, "--set", "nodot", "--plugin", PLUGIN, cwd=tmp_path), 2, "NODE.INPUT=VALUE"
    )
    assert_clean_error(
        easel("run", wf, "--set", "ghost.seed=1", "--plugin", PLUGIN, cwd=tmp_path),
        2,
        "no node 'ghost'",
    )
    assert_clean_error(easel("run", wf, "--bogus", cwd=tmp_path), 2, "unrecognized arguments")


def test_runtime_failure_exits_1_naming_the_node(tmp_path):
    nodes = {
        "bad": {"type": "Fail", "inputs": {"message": "broken input file"}},
        "s": {"type": "Show", "inputs": {"value": ["bad", "value"]}},
        "ok": {"type": "Show", "inputs": {"value": 1}},
    }
    result = easel("run", write(tmp_path, nodes), "--plugin", PLUGIN, cwd=tmp_path)
    assert_clean_error(result, 1, "error: node 'bad' (Fail): RuntimeError: broken input file")
    assert "[3/3] ok (Show) done" in result.stderr or "ok (Show) done" in result.stderr


def test_set_overrides_inputs(tmp_path):
    wf = write(tmp_path, GOOD)
    result = easel("run", wf, "--plugin", PLUGIN, "--set", "add.b=100", "--json", cwd=tmp_path)
    assert 100 < json.loads(result.stdout)["ui"]["show"]["value"] < 101


def test_disk_cache_rerun_executes_zero_nodes_and_seed_change_reruns_downstream(tmp_path):
    nodes = {
        "c": {"type": "Const", "inputs": {"value": 2}},
        "a": {"type": "Add", "inputs": {"a": ["c", "value"], "b": 1}},
        "s": {"type": "Show", "inputs": {"value": ["a", "sum"]}},
    }
    wf = write(tmp_path, nodes)
    args = (
        "run",
        wf,
        "--plugin",
        PLUGIN,
        "--disk-cache",
        "--cache-dir",
        str(tmp_path / "c"),
        "--json",
    )
    first = json.loads(easel(*args, cwd=tmp_path).stdout)
    assert set(first["nodes"].values()) == {"executed"}
    again = json.loads(easel(*args, cwd=tmp_path).stdout)
    assert set(again["nodes"].values()) == {"cached"}
    changed = json.loads(easel(*args, "--set", "a.b=5", cwd=tmp_path).stdout)
    assert changed["nodes"] == {"c": "cached", "a": "executed", "s": "executed"}


def test_broken_plugin_is_reported_and_the_run_goes_on(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise ImportError('missing dependency foo')\n")
    result = easel(
        "run", write(tmp_path, GOOD), "--plugin", PLUGIN, "--plugin", str(broken), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "plugin 'broken': failed to load: ImportError: missing dependency foo" in result.stderr
    listed = easel("plugins", "--plugin", str(broken), cwd=tmp_path)
    assert "broken" in listed.stdout and "[ERROR]" in listed.stdout


def test_duplicate_node_type_names_both_plugins(tmp_path):
    copy = tmp_path / "copycat.py"
    copy.write_text(Path(PLUGIN).read_text())
    result = easel(
        "run", write(tmp_path, GOOD), "--plugin", PLUGIN, "--plugin", str(copy), cwd=tmp_path
    )
    assert_clean_error(result, 2, "defined by both plugins 'cli_plugin' and 'copycat'")


def test_nodes_json_is_the_schema(tmp_path):
    result = easel("nodes", "--json", "--plugin", PLUGIN, cwd=tmp_path)
    schemas = json.loads(result.stdout)
    assert schemas["Add"]["inputs"]["b"]["maximum"] == 1000
    assert schemas["Add"]["plugin"] == "cli_plugin"
