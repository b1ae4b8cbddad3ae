"""Easel runs as ComfyUI sees them: queue items, history entries, jobs and output `ui` dicts.

Nothing here is stored twice: a run submitted through ComfyUI's `POST /prompt` keeps what
ComfyUI clients read back (the prompt as posted, `extra_data`, `number`) under the workflow's
editor-only `ui.comfyui`, in the same queue database; a run submitted through Easel's own API
gets a prompt made from its workflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from easel.core.plugins import Registry
from easel.core.status import RunStatus

COMFY_KEY = "comfyui"  # workflow["ui"][COMFY_KEY]: what ComfyUI clients read back
JOB_STATUS = {
    RunStatus.QUEUED: "pending",
    RunStatus.RUNNING: "in_progress",
    RunStatus.SUCCEEDED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "cancelled",
}
EASEL_STATUS = {v: k for k, v in JOB_STATUS.items()}
# Keys of `extra_data` never stored: ComfyUI's frontend sends its account secrets there.
SECRET_KEYS = frozenset({"auth_token_comfy_org", "api_key_comfy_org"})


def ms(seconds: float | None) -> int | None:
    return int(seconds * 1000) if seconds is not None else None


def comfy_ui(files: Any, kind: str = "output") -> list[dict[str, str]]:
    """Easel's output paths (relative to the output folder) as ComfyUI image references."""
    images = []
    for path in files or []:
        if not isinstance(path, str):
            continue
        folder, _, name = path.rpartition("/")
        images.append({"filename": name, "subfolder": folder, "type": kind})
    return images


def comfy_outputs(ui: Any) -> dict[str, Any]:
    """One node's Easel `ui` dict as ComfyUI's: `files` become `images`; the rest is kept."""
    if not isinstance(ui, Mapping):
        return {}
    out: dict[str, Any] = {k: v for k, v in ui.items() if k != "files"}
    if "files" in ui:
        out["images"] = comfy_ui(ui["files"])
    return out


def easel_to_prompt(workflow: Mapping[str, Any], registry: Registry) -> dict[str, Any]:
    """An API-format prompt for an Easel workflow (links by output slot, Easel names)."""
    prompt: dict[str, Any] = {}
    nodes = workflow.get("nodes") or {}
    for node_id, spec in nodes.items():
        if not isinstance(spec, Mapping):
            continue
        inputs: dict[str, Any] = {}
        for name, value in (spec.get("inputs") or {}).items():
            if (
                isinstance(value, list)
                and len(value) == 2
                and isinstance(value[0], str)
                and isinstance(value[1], str)
                and value[0] in nodes
            ):
                source = registry.get(str(nodes[value[0]].get("type", "")))
                outputs = list(source.outputs) if source is not None else []
                slot = outputs.index(value[1]) if value[1] in outputs else 0
                inputs[name] = [value[0], slot]
            else:
                inputs[name] = value
        prompt[str(node_id)] = {"class_type": spec.get("type"), "inputs": inputs}
    return prompt


def output_nodes(prompt: Mapping[str, Any], registry: Registry) -> list[str]:
    """The ids of a prompt's output nodes (ComfyUI's `outputs_to_execute`)."""
    from easel.server.comfy_schema import node_maps

    maps = node_maps(registry)
    found = []
    for node_id, entry in prompt.items():
        class_type = str(entry.get("class_type", "")) if isinstance(entry, Mapping) else ""
        node_type = registry.get(class_type.removeprefix("easel-native:"))
        if node_type is None and class_type in maps:
            node_type = registry.get(maps[class_type].easel_type)
        if node_type is not None and node_type.output_node:
            found.append(str(node_id))
    return found


def comfy_record(run: Mapping[str, Any], registry: Registry) -> dict[str, Any]:
    """What ComfyUI knows of a run: prompt, extra_data, number (a run read with its workflow)."""
    workflow = run.get("workflow") or {}
    ui = workflow.get("ui") if isinstance(workflow, Mapping) else None
    stored = ui.get(COMFY_KEY) if isinstance(ui, Mapping) else None
    if isinstance(stored, Mapping) and isinstance(stored.get("prompt"), Mapping):
        prompt = dict(stored["prompt"])
        extra = dict(stored.get("extra_data") or {})
        number = stored.get("number", run.get("seq", 0))
    else:
        prompt = easel_to_prompt(workflow, registry) if isinstance(workflow, Mapping) else {}
        extra = {}
        number = run.get("seq", 0)
    extra.setdefault("client_id", run.get("client_id"))
    extra.setdefault("create_time", ms(run.get("created")))
    return {
        "number": number,
        "prompt": prompt,
        "extra_data": extra,
        "outputs_to_execute": output_nodes(prompt, registry),
    }


def queue_item(run: Mapping[str, Any], registry: Registry) -> list[Any]:
    """ComfyUI's queue entry: [number, prompt_id, prompt, extra_data, outputs_to_execute]."""
    record = comfy_record(run, registry)
    return [
        record["number"],
        run["id"],
        record["prompt"],
        record["extra_data"],
        record["outputs_to_execute"],
    ]


def error_message(run: Mapping[str, Any]) -> dict[str, Any]:
    """ComfyUI's execution_error data for a failed run."""
    error = run.get("error") or {}
    failures = error.get("failures") or [] if isinstance(error, Mapping) else []
    first = failures[0] if failures else {}
    return {
        "prompt_id": run["id"],
        "timestamp": ms(run.get("finished")),
        "node_id": str(first.get("node") or ""),
        "node_type": first.get("node_type") or "",
        "executed": [],
        "exception_message": (
            first.get("message")
            or (error.get("message") if isinstance(error, Mapping) else "")
            or ""
        ),
        "exception_type": "NodeError" if first else "RunError",
        "traceback": [],
        "current_inputs": {},
        "current_outputs": {},
    }


def status_messages(run: Mapping[str, Any]) -> list[list[Any]]:
    messages: list[list[Any]] = []
    if run.get("started") is not None:
        messages.append(
            ["execution_start", {"prompt_id": run["id"], "timestamp": ms(run["started"])}]
        )
    status = run.get("status")
    end = {"prompt_id": run["id"], "timestamp": ms(run.get("finished"))}
    if status == RunStatus.SUCCEEDED:
        messages.append(["execution_success", end])
    elif status == RunStatus.FAILED:
        messages.append(["execution_error", error_message(run)])
    elif status == RunStatus.CANCELLED:
        messages.append(
            ["execution_interrupted", {**end, "node_id": "", "node_type": "", "executed": []}]
        )
    return messages


def history_entry(run: Mapping[str, Any], registry: Registry) -> dict[str, Any]:
    """ComfyUI's history entry of a finished run."""
    outputs = {str(node): comfy_outputs(ui) for node, ui in (run.get("outputs") or {}).items()}
    return {
        "prompt": queue_item(run, registry),
        "outputs": outputs,
        "status": {
            "status_str": "success" if run.get("status") == RunStatus.SUCCEEDED else "error",
            "completed": run.get("status") == RunStatus.SUCCEEDED,
            "messages": status_messages(run),
        },
        "meta": {
            node: {"node_id": node, "display_node": node, "parent_node": None, "real_node_id": node}
            for node in outputs
        },
    }


def outputs_summary(outputs: Mapping[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """(how many output files, the first image as the job's preview)."""
    count, preview = 0, None
    for node_id, ui in outputs.items():
        for media, items in (ui or {}).items():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, Mapping):
                    count += 1
                    if preview is None and media in ("images", "video", "audio"):
                        preview = {**item, "nodeId": str(node_id), "mediaType": media}
    return count, preview


def job(run: Mapping[str, Any], registry: Registry, detail: bool = False) -> dict[str, Any]:
    """A run as an entry of ComfyUI's `/jobs` (with `detail`: its workflow and outputs)."""
    outputs = {str(node): comfy_outputs(ui) for node, ui in (run.get("outputs") or {}).items()}
    count, preview = outputs_summary(outputs)
    status = run.get("status", RunStatus.QUEUED)
    record = comfy_record(run, registry) if detail or "workflow" in run else None
    entry: dict[str, Any] = {
        "id": run["id"],
        "status": JOB_STATUS.get(status, "pending"),
        "priority": record["number"] if record else run.get("seq", 0),
        "create_time": ms(run.get("created")),
        "execution_start_time": ms(run.get("started")),
        "execution_end_time": ms(run.get("finished")),
        "outputs_count": count,
        "previewable_outputs_count": 1 if preview else 0,
        "preview_output": preview,
        "execution_error": error_message(run) if status == RunStatus.FAILED else None,
        "workflow_id": None,
    }
    if record is not None:
        pnginfo = record["extra_data"].get("extra_pnginfo")
        ui_graph = pnginfo.get("workflow") if isinstance(pnginfo, Mapping) else None
        if isinstance(ui_graph, Mapping) and isinstance(ui_graph.get("id"), str):
            entry["workflow_id"] = ui_graph["id"]
    if detail and record is not None:
        entry["outputs"] = outputs
        entry["workflow"] = {"prompt": record["prompt"], "extra_data": record["extra_data"]}
        entry["execution_status"] = {
            "status_str": "success" if status == RunStatus.SUCCEEDED else "error",
            "completed": status == RunStatus.SUCCEEDED,
            "messages": status_messages(run),
        }
        entry["update_time"] = ms(run.get("finished") or run.get("started") or run.get("created"))
    return entry
