"""`easel.core` stays importable, and usable, without torch."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
sys.modules["torch"] = None  # any import of torch now fails
import easel.core.cache, easel.core.context, easel.core.diskcache, easel.core.events
import easel.core.executor, easel.core.graph, easel.core.hookspecs, easel.core.node
import easel.core.plugins, easel.core.types
from easel.core.plugins import load_plugins
from easel.core.executor import Executor
registry = load_plugins(entry_points=False, environ={})
wf = {"format": "easel.workflow", "version": 1, "nodes": {
    "a": {"type": "Int", "inputs": {"value": 2}},
    "m": {"type": "Math", "inputs": {"a": ["a", "value"], "b": 3, "op": "multiply"}}}}
result = Executor(registry).run(wf, targets=["m"], keep_values=True)
print(result.values["m"]["result"])
"""


def test_core_imports_and_runs_without_torch():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "6.0"
