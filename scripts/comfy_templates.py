"""Convert every local image template of ComfyUI's official workflow templates and report.

    python scripts/comfy_templates.py            # the table and the blocking node types
    python scripts/comfy_templates.py --json     # the same as JSON
    python scripts/comfy_templates.py --failures # and why each template does not convert

The corpus is the PyPI package `comfyui-workflow-templates-json` (pinned in the dev extra of
pyproject.toml; nothing is vendored): a wheel of `templates/*.json` plus `templates/index.json`,
the catalogue ComfyUI's template browser shows.

A template counts as a **local image template** when, in that catalogue:

1. it is listed under a category whose `type` is "image" (Image, Image Tools, Node Basics and
   the applied Product / Character / Brand categories; the Video, Audio, 3D Model and LLM
   categories are left out);
2. it runs locally: its name does not start with `api_` and the catalogue does not mark it
   `"openSource": false`, the mark of templates that need ComfyUI's paid cloud (API) nodes;
3. every output it declares (`io.outputs[].mediaType`) is an image: a template in an image
   category that makes a video is left out.

Its **family** comes from the catalogue's `models` list (FAMILIES below; the first model
name where no rule matches). A template **converts** when `easel.comfy.convert.to_easel`
accepts it (subgraphs expanded) and every resulting node is a registered Easel node type
whose linked inputs and outputs exist, so no missing mapping hides behind the count. The
node types that block conversion are counted once per template they block. The target of
issue 11 is 80% converted; this script reports against it and asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE = "comfyui_workflow_templates_json"
DISTRIBUTION = "comfyui-workflow-templates-json"
TARGET = 0.80
NO_EQUIVALENT = re.compile(r"ComfyUI node type '(.+)' has no Easel equivalent")
# A mapped node whose input value has no equivalent (CLIPLoader type 'qwen_image').
NO_VALUE = re.compile(r"^(?:\w+=)?('.*?'|[^ ]+) has no Easel equivalent")

# (family, pattern on the catalogue's model names), first match wins: Chroma is tagged FLUX
# too, FLUX.2 templates also carry the plain FLUX tag.
FAMILIES: tuple[tuple[str, str], ...] = (
    ("Chroma", r"\bchroma\b"),
    ("Flux.2", r"flux\.2"),
    ("Flux 3", r"flux 3"),
    ("Flux.1", r"\bflux\b"),
    ("Qwen-Image (and Edit)", r"\bqwen"),
    ("Z-Image", r"z-image"),
    ("HiDream", r"hidream"),
    ("SDXL", r"\bsdxl\b"),
    ("SD3.5", r"\bsd3\.5\b"),
    ("SD1.5", r"\bsd1\.5\b"),
    ("no model (node basics, utilities)", r"^none$"),
)


@dataclass
class Template:
    name: str
    category: str
    family: str
    converted: bool = False
    blockers: list[str] = field(default_factory=list)  # ComfyUI node types without mapping
    values: list[str] = field(default_factory=list)  # "Node.input=value" that do not convert
    problems: list[str] = field(default_factory=list)  # every reason it does not convert


@dataclass
class Survey:
    """What `survey()` found: one entry per local image template."""

    version: str
    catalogue_size: int
    templates: list[Template]

    @property
    def converted(self) -> int:
        return sum(t.converted for t in self.templates)

    def families(self) -> dict[str, tuple[int, int]]:
        """family -> (converted, total), the largest families first."""
        totals: Counter[str] = Counter(t.family for t in self.templates)
        done: Counter[str] = Counter(t.family for t in self.templates if t.converted)
        return {
            family: (done[family], total)
            for family, total in sorted(totals.items(), key=lambda item: (-item[1], item[0]))
        }

    def blocking(self) -> list[tuple[str, int]]:
        """ComfyUI node types with no Easel equivalent, by how many templates they block."""
        counts: Counter[str] = Counter()
        for template in self.templates:
            counts.update(set(template.blockers))
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def blocking_values(self) -> list[tuple[str, int]]:
        """Input values of mapped nodes that have no Easel equivalent, by templates blocked."""
        counts: Counter[str] = Counter()
        for template in self.templates:
            counts.update(set(template.values))
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def to_json(self) -> dict[str, Any]:
        return {
            "package": DISTRIBUTION,
            "version": self.version,
            "catalogue_size": self.catalogue_size,
            "local_image_templates": len(self.templates),
            "converted": self.converted,
            "families": {f: {"converted": c, "total": t} for f, (c, t) in self.families().items()},
            "blocking": dict(self.blocking()),
            "blocking_values": dict(self.blocking_values()),
            "failures": {t.name: t.problems for t in self.templates if not t.converted},
        }


def templates_dir() -> Path:
    """The installed package's templates folder (ImportError when it is not installed)."""
    return Path(str(importlib.resources.files(PACKAGE))) / "templates"


def family_of(models: list[Any]) -> str:
    names = " ".join(str(m) for m in models).lower().strip()
    for family, pattern in FAMILIES:
        if re.search(pattern, names):
            return family
    return str(models[0]) if models else "unknown"


def local_image_templates(index: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(category title, catalogue entry) of each local image template (module docstring)."""
    chosen = []
    for category in index:
        if category.get("type") != "image":
            continue
        for entry in category.get("templates") or []:
            name = str(entry.get("name", ""))
            outputs = {o.get("mediaType") for o in (entry.get("io") or {}).get("outputs") or []}
            if name.startswith("api_") or entry.get("openSource") is False or outputs - {"image"}:
                continue
            chosen.append((str(category.get("title", "")), entry))
    return chosen


def structural_problems(workflow: dict[str, Any], registry: Any) -> list[str]:
    """Nodes of a converted workflow that Easel would not know: unregistered types, unknown
    inputs, links to outputs that do not exist."""
    problems = []
    nodes = workflow["nodes"]
    for node_id, node in nodes.items():
        node_type = registry.get(node["type"])
        if node_type is None:
            problems.append(f"node {node_id}: Easel has no node type {node['type']!r}")
            continue
        for name, value in node["inputs"].items():
            if name not in node_type.inputs:
                problems.append(f"node {node_id} ({node['type']}): no input {name!r}")
            elif isinstance(value, list) and len(value) == 2 and value[0] in nodes:
                source = registry.get(nodes[value[0]]["type"])
                if source is not None and value[1] not in source.outputs:
                    problems.append(f"node {node_id}: links to a missing output {value}")
    return problems


def survey(folder: Path | None = None) -> Survey:
    """Convert every local image template of the installed corpus (or of `folder`)."""
    from easel.comfy.convert import to_easel
    from easel.core.graph import WorkflowError
    from easel.core.plugins import load_plugins

    folder = folder or templates_dir()
    index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    registry = load_plugins(entry_points=False)
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    catalogue_size = sum(len(category.get("templates") or []) for category in index)
    found = []
    for category, entry in local_image_templates(index):
        template = Template(entry["name"], category, family_of(entry.get("models") or []))
        path = folder / f"{template.name}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            workflow = to_easel(data)
        except FileNotFoundError:
            template.problems.append(f"{path.name} is missing from the package")
        except WorkflowError as exc:
            for problem in exc.problems:
                match = NO_EQUIVALENT.search(problem.message)
                if match:
                    template.blockers.append(match.group(1))
                value = NO_VALUE.search(problem.message)
                if value and problem.input and problem.node_type:
                    template.values.append(f"{problem.node_type}.{problem.input}={value.group(1)}")
                if not problem.message.startswith("the ComfyUI node types Easel converts"):
                    template.problems.append(str(problem))
        else:
            template.problems = structural_problems(workflow, registry)
            template.converted = not template.problems
        found.append(template)
    return Survey(version, catalogue_size, found)


def report(result: Survey, failures: bool = False) -> str:
    total = len(result.templates)
    share = result.converted / total if total else 0.0
    lines = [
        f"{DISTRIBUTION} {result.version}: {total} local image templates "
        f"(of {result.catalogue_size} in the catalogue)",
        "",
        "| family | converted/total |",
        "|---|---|",
    ]
    for family, (done, count) in result.families().items():
        lines.append(f"| {family} | {done}/{count} |")
    lines += [
        f"| **all** | **{result.converted}/{total}** ({share:.0%}; target "
        f"{TARGET:.0%}: {'met' if share >= TARGET else 'not met'}) |",
        "",
        "Node types that block conversion (templates blocked):",
        "",
    ]
    lines += [f"- `{kind}`: {count}" for kind, count in result.blocking()]
    if result.blocking_values():
        lines += ["", "Input values that block conversion (templates blocked):", ""]
        lines += [f"- `{value}`: {count}" for value, count in result.blocking_values()]
    if failures:
        lines += ["", "Why each template does not convert:"]
        for template in result.templates:
            if not template.converted:
                lines.append(f"- {template.name}: " + "; ".join(template.problems[:6]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the survey as JSON")
    parser.add_argument("--failures", action="store_true", help="list why each one fails")
    parser.add_argument(
        "--templates", type=Path, help="a templates folder (default: the installed package's)"
    )
    args = parser.parse_args(argv)
    try:
        result = survey(args.templates)
    except (ImportError, FileNotFoundError) as exc:
        print(
            f"error: the templates corpus is not installed ({exc}): pip install -e '.[dev]'",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(result.to_json(), indent=2) if args.json else report(result, args.failures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
