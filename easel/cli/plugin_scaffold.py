"""`easel plugins new NAME`: writes a plugin distribution like plugins/easel-example, with a
node, an editor asset, tests and the entry point that makes Easel find it once installed."""

from __future__ import annotations

import re
from pathlib import Path

from easel.cli.common import UsageError

NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")

PYPROJECT = """[build-system]
requires = ["hatchling>=1.21"]
build-backend = "hatchling.build"

[project]
name = "easel-{name}"
version = "0.1.0"
description = "An Easel plugin: {title} nodes"
requires-python = ">=3.11"
dependencies = ["easel"]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points.easel]
{name} = "{module}"

[tool.hatch.build.targets.wheel]
packages = ["{module}"]
"""

README = """# easel-{name}

An Easel plugin. Install it next to Easel and every `easel` command and server sees it:

```
pip install -e .
easel plugins                 # lists "{name}" with its nodes
easel nodes | grep {cls}
python -m pytest tests        # its own tests
```

Write nodes in `{module}/__init__.py` (see Easel's docs/plugins.md), editor behaviour in
`{module}/web/index.js`.
"""

MODULE = '''"""Easel plugin "{name}": its nodes, and the editor asset that goes with them."""

from __future__ import annotations

from pathlib import Path

import easel

__version__ = "0.1.0"


@easel.node(category="{name}", outputs={{"text": str}}, display_name="{title} greeting")
def {cls}Greeting(name: str = easel.Input("world", max_length=200),
                  times: int = easel.Input(1, ge=1, le=10)) -> str:
    """Greet someone, a few times over."""
    if not name.strip():
        raise easel.NodeError("give a name to greet", "name")
    return " ".join([f"hello {{name}}"] * times)


@easel.hookimpl
def register_nodes(register):
    register({cls}Greeting)


@easel.hookimpl
def register_web_assets(register):
    register(Path(__file__).parent / "web")
'''

INDEX_JS = """// Editor asset of the "{name}" plugin: Easel calls setup(editor) at start.

export function setup(editor) {{
  editor.addContextMenuItem({{
    label: "Greet twice",
    when: (node) => node.type === "{cls}Greeting",
    action: (node) => editor.setValue(node.id, "times", 2),
  }});
  editor.onNodeExecuted((id, ui) => {{
    if (ui && ui.text) editor.toast(`${{id}}: ${{ui.text}}`);
  }});
}}
"""

TESTS = '''"""The {name} plugin, seen through its entry point and run by Easel's executor."""

from __future__ import annotations

import importlib.metadata

import {module}
from easel.core.executor import Executor
from easel.core.plugins import load_plugins

WORKFLOW = {{
    "format": "easel.workflow", "version": 1,
    "nodes": {{"greet": {{"type": "{cls}Greeting", "inputs": {{"name": "Ada", "times": 2}}}}}},
}}


def registry():
    return load_plugins(entry_points=False, environ={{}}, extra=[("{name}", {module})])


def test_the_entry_point_names_the_module():
    found = {{ep.name: ep.value for ep in importlib.metadata.entry_points(group="easel")}}
    assert found.get("{name}") == "{module}", "pip install -e . first"


def test_the_plugin_loads_without_problems():
    info = registry().plugins["{name}"]
    assert info.ok, info.errors
    assert info.nodes == ["{cls}Greeting"]
    assert (info.web_assets / "index.js").is_file()


def test_the_node_runs_in_a_workflow():
    result = Executor(registry()).run(WORKFLOW, targets=["greet"], keep_values=True)
    assert result.ok, result.failures
    assert result.values["greet"]["text"] == "hello Ada hello Ada"


def test_an_empty_name_is_an_error_naming_the_input():
    WORKFLOW["nodes"]["greet"]["inputs"]["name"] = " "
    result = Executor(registry()).run(WORKFLOW, targets=["greet"])
    [failure] = result.failures
    assert (failure.input, failure.message) == ("name", "give a name to greet")
'''


def scaffold(name: str, parent: Path) -> Path:
    """Write `easel-NAME/` under `parent`; returns its folder."""
    if not NAME.match(name):
        raise UsageError(
            f"plugin name {name!r}: use lowercase letters, digits and hyphens (e.g. 'colour-tools')"
        )
    name = name.removeprefix("easel-")
    module = "easel_" + name.replace("-", "_")
    title = " ".join(part.capitalize() for part in name.split("-"))
    cls = title.replace(" ", "")
    root = parent / f"easel-{name}"
    if root.exists():
        raise UsageError(f"{root} already exists")
    values = {"name": name, "module": module, "title": title, "cls": cls}
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{module}/__init__.py": MODULE,
        f"{module}/web/index.js": INDEX_JS,
        f"tests/test_{module}.py": TESTS,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values))
    return root
