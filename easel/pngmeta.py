"""Workflows in image metadata: write Easel's PNG text chunks, read Easel's and ComfyUI's back."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from easel.core.graph import Problem, WorkflowError
from easel.core.plugins import plugin_comfy_nodes

WORKFLOW_KEY = "easel.workflow"  # the Easel workflow, JSON
PARAMETERS_KEY = "parameters"  # a one-glance summary in the text layout image viewers read
COMFY_PROMPT_KEY = "prompt"  # ComfyUI: the API-format graph that ran
COMFY_WORKFLOW_KEY = "workflow"  # ComfyUI: the editor (UI-format) graph

ImageSource = str | Path | bytes | IO[bytes]


def png_info(workflow: Mapping[str, Any] | None, parameters: str | None = None) -> Any:
    """A Pillow PngInfo holding the workflow (and a parameters summary) as tEXt chunks.

    The JSON is ASCII-only (non-Latin-1 text escaped), so plain tEXt chunks carry any prompt
    and any PNG reader, including a few lines of browser JavaScript, can get it back.
    """
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if workflow is not None:
        info.add_text(WORKFLOW_KEY, json.dumps(workflow, ensure_ascii=True, separators=(",", ":")))
        for key, value in comfy_chunks(workflow).items():
            info.add_text(key, json.dumps(value, ensure_ascii=True, separators=(",", ":")))
    if parameters:
        info.add_text(PARAMETERS_KEY, parameters.encode("latin-1", "replace").decode("latin-1"))
    return info


def comfy_chunks(workflow: Mapping[str, Any]) -> dict[str, Any]:
    """The chunks ComfyUI writes, for a run queued through its protocol: `prompt` (the API
    graph) and each `extra_data.extra_pnginfo` entry (its frontend sends `workflow`, the UI
    graph), so that ComfyUI's frontend loads the image's graph back."""
    ui = workflow.get("ui")
    comfy = ui.get("comfyui") if isinstance(ui, Mapping) else None
    if not isinstance(comfy, Mapping):
        return {}
    chunks: dict[str, Any] = {}
    if comfy.get("prompt") is not None:
        chunks[COMFY_PROMPT_KEY] = comfy["prompt"]
    extra = comfy.get("extra_data")
    pnginfo = extra.get("extra_pnginfo") if isinstance(extra, Mapping) else None
    if isinstance(pnginfo, Mapping):
        for key, value in pnginfo.items():
            if isinstance(key, str) and key not in (WORKFLOW_KEY, PARAMETERS_KEY, COMFY_PROMPT_KEY):
                chunks[key] = value
    return chunks


def read_text_chunks(source: ImageSource) -> dict[str, str]:
    """The text metadata of an image: PNG tEXt/zTXt/iTXt chunks, and "key:value" EXIF strings
    (where ComfyUI puts "prompt" and "workflow" in WebP files)."""
    from PIL import Image, UnidentifiedImageError

    name = _describe(source)
    handle: Any = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(handle) as image:
            texts: dict[str, str] = {}
            for key, value in (getattr(image, "text", None) or image.info).items():
                if isinstance(value, str):
                    texts[str(key)] = value
            for value in image.getexif().values():
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                if isinstance(value, str):
                    key, sep, rest = value.partition(":")
                    if sep and key in (COMFY_PROMPT_KEY, COMFY_WORKFLOW_KEY, WORKFLOW_KEY):
                        texts.setdefault(key, rest)
            return texts
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise WorkflowError([Problem(f"{name} is not an image this tool reads: {exc}")]) from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt files
        raise WorkflowError([Problem(f"cannot read the metadata of {name}: {exc}")]) from None


def embedded_workflows(source: ImageSource) -> dict[str, Any]:
    """The workflows an image carries, parsed: keys "easel", "comfy-api", "comfy-ui"."""
    chunks = read_text_chunks(source)
    found: dict[str, Any] = {}
    for kind, key in (
        ("easel", WORKFLOW_KEY),
        ("comfy-api", COMFY_PROMPT_KEY),
        ("comfy-ui", COMFY_WORKFLOW_KEY),
    ):
        if key not in chunks:
            continue
        try:
            found[kind] = json.loads(chunks[key])
        except json.JSONDecodeError as exc:
            raise WorkflowError(
                [
                    Problem(
                        f"the {key!r} metadata of {_describe(source)} is not valid JSON: {exc.msg}"
                    )
                ]
            ) from None
    return found


def workflow_from_png(source: ImageSource) -> dict[str, Any]:
    """The workflow embedded in an image made by Easel or ComfyUI, as an Easel workflow dict.

    Easel's own chunk wins; from ComfyUI, the graph that actually ran ("prompt") is converted,
    with titles, positions and notes taken from its editor graph ("workflow") when that
    converts too; a file with only the editor graph is converted from it.
    """
    from easel.comfy.convert import to_easel

    found = embedded_workflows(source)
    if "easel" in found:
        workflow = found["easel"]
        if not isinstance(workflow, dict):
            raise WorkflowError(
                [
                    Problem(
                        f"the {WORKFLOW_KEY!r} metadata of "
                        f"{_describe(source)} is not a workflow object"
                    )
                ]
            )
        return workflow
    if "comfy-api" in found:
        converted = to_easel(found["comfy-api"], plugin_comfy_nodes())
        if "comfy-ui" in found:
            _merge_editor_data(converted, found["comfy-ui"])
        return converted
    if "comfy-ui" in found:
        return to_easel(found["comfy-ui"], plugin_comfy_nodes())
    raise WorkflowError(
        [
            Problem(
                f"{_describe(source)} has no workflow embedded (looked for the metadata "
                f"{WORKFLOW_KEY!r} written by Easel and 'prompt'/'workflow' written by ComfyUI)"
            )
        ]
    )


def _merge_editor_data(workflow: dict[str, Any], comfy_ui: Any) -> None:
    from easel.comfy.convert import to_easel

    try:
        editor = to_easel(comfy_ui, plugin_comfy_nodes()).get("ui", {})
    except WorkflowError:
        return  # the editor graph is optional: the prompt alone is a complete workflow
    ui = workflow.setdefault("ui", {})
    nodes = workflow.get("nodes", {})
    for key in ("positions", "titles"):
        values = {k: v for k, v in editor.get(key, {}).items() if k in nodes}
        if values:
            ui[key] = {**ui.get(key, {}), **values}
    if editor.get("notes"):
        ui["notes"] = editor["notes"]


def _describe(source: ImageSource) -> str:
    if isinstance(source, str | Path):
        return str(source)
    return str(getattr(source, "name", "the image"))


def generation_summary(workflow: Mapping[str, Any], node_id: str) -> str | None:
    """The prompt and sampler settings behind output node `node_id`, in the "parameters"
    layout that image viewers and model sites read; None if no sampler feeds it."""
    nodes = workflow.get("nodes")
    if not isinstance(nodes, Mapping):
        return None
    sampler_id = _upstream_of_type(nodes, node_id, "KSampler")
    if sampler_id is None:
        return None
    sampler = nodes[sampler_id].get("inputs") or {}

    def value(inputs: Mapping[str, Any], name: str, depth: int = 0) -> Any:
        item = inputs.get(name)
        if isinstance(item, Mapping) and set(item) == {"value"}:
            return item["value"]
        if isinstance(item, list) and len(item) == 2 and item[0] in nodes and depth < 8:
            source = nodes[item[0]].get("inputs") or {}
            literals = [k for k, v in source.items() if not isinstance(v, list)]
            if len(literals) == 1:  # a value node (Int, Seed, String, ...)
                return value(source, literals[0], depth + 1)
            return None
        return item

    def text_of(name: str) -> Any:
        link = sampler.get(name)
        if isinstance(link, list) and len(link) == 2 and link[0] in nodes:
            return value(nodes[link[0]].get("inputs") or {}, "text")
        return None

    lines = []
    prompt, negative = text_of("positive"), text_of("negative")
    lines.append(prompt if isinstance(prompt, str) else "")
    if isinstance(negative, str) and negative:
        lines.append(f"Negative prompt: {negative}")
    settings = []
    for label, name in (
        ("Steps", "steps"),
        ("Sampler", "sampler_name"),
        ("Schedule type", "scheduler"),
        ("CFG scale", "cfg"),
        ("Seed", "seed"),
        ("Denoising strength", "denoise"),
    ):
        found = value(sampler, name)
        if found is not None and not isinstance(found, list):
            settings.append(f"{label}: {found}")
    latent_id = _upstream_of_type(nodes, sampler_id, "EmptyLatent")
    if latent_id is not None:
        latent = nodes[latent_id].get("inputs") or {}
        width, height = value(latent, "width"), value(latent, "height")
        if isinstance(width, int) and isinstance(height, int):
            settings.append(f"Size: {width}x{height}")
    loader_id = _upstream_of_type(nodes, sampler_id, "CheckpointLoader")
    if loader_id is not None:
        name = value(nodes[loader_id].get("inputs") or {}, "name")
        if isinstance(name, str):
            settings.append(f"Model: {name}")
    lines.append(", ".join(settings))
    return "\n".join(lines)


def _upstream_of_type(nodes: Mapping[str, Any], start: str, node_type: str) -> str | None:
    """The nearest node of `node_type` that `start` depends on (breadth first)."""
    queue, seen = [start], {start}
    while queue:
        current = queue.pop(0)
        node = nodes.get(current)
        if not isinstance(node, Mapping):
            continue
        if current != start and node.get("type") == node_type:
            return current
        for item in (node.get("inputs") or {}).values():
            if (
                isinstance(item, list)
                and len(item) == 2
                and isinstance(item[0], str)
                and item[0] not in seen
            ):
                seen.add(item[0])
                queue.append(item[0])
    return None
