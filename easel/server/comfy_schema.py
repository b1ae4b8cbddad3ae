"""Easel node schemas in ComfyUI's `/object_info` shape, and ComfyUI prompts as Easel workflows.

Node names: every Easel node is listed under its Easel name with Easel's inputs and outputs.
ComfyUI core names that the importer maps (easel.comfy.mapping.NODE_MAPS, and plugins'
mappings) and that are not also Easel names (CheckpointLoaderSimple, CLIPTextEncode,
EmptyLatentImage, ...) are listed too, in ComfyUI's shape (ComfyUI's input names, widget
order and output slots), so graphs made with ComfyUI load in its frontend. A prompt may use
either: a node whose class is an Easel type and whose inputs are that type's inputs runs as it
is; any other node goes through the ComfyUI importer (so ComfyUI's KSampler, with
`latent_image`, is still ComfyUI's KSampler).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from easel.core.graph import Problem, WorkflowError
from easel.core.plugins import Registry

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN"})
ALIAS_CATEGORY = "ComfyUI names"
# The class an Easel-shaped node gets inside the importer, where ComfyUI's own names live.
_NATIVE_PREFIX = "easel-native:"


def input_spec(spec: Mapping[str, Any], upload_files: list[str] | None = None) -> list[Any]:
    """One Easel input schema as ComfyUI's `[type_or_choices, options]`."""
    options: dict[str, Any] = {}
    kind = spec["type"]
    if "default" in spec and spec["default"] is not None:
        options["default"] = spec["default"]
    if "minimum" in spec:
        options["min"] = spec["minimum"]
    elif "exclusiveMinimum" in spec:
        options["min"] = spec["exclusiveMinimum"]
    if "maximum" in spec:
        options["max"] = spec["maximum"]
    if "step" in spec:
        options["step"] = spec["step"]
        if kind == "FLOAT":
            options["round"] = spec["step"]
    if spec.get("multiline"):
        options["multiline"] = True
    if spec.get("description"):
        options["tooltip"] = spec["description"]
    if spec.get("widget") == "seed":
        options["control_after_generate"] = True
    if spec.get("link_only") and kind in WIDGET_TYPES:
        options["forceInput"] = True
    if spec.get("widget") == "image_upload":
        options["image_upload"] = True
        return [list(upload_files or []), options]
    if spec.get("choices") is not None and not spec.get("link_only"):
        return [list(spec["choices"]), options]
    return [kind, options] if options else [kind]


def is_required(spec: Mapping[str, Any]) -> bool:
    """ComfyUI's `required`: a socket that must be linked, or any widget (it always holds a
    value); an optional socket (KSampler's negative) is `optional`."""
    if spec.get("required"):
        return True
    return not spec.get("link_only") and "default" in spec


def node_info(schema: Mapping[str, Any], upload_files: list[str] | None = None) -> dict[str, Any]:
    """One Easel node schema (`NodeType.schema()`) as ComfyUI's object_info entry."""
    required: dict[str, Any] = {}
    optional: dict[str, Any] = {}
    for name, spec in schema["inputs"].items():
        target = required if is_required(spec) else optional
        target[name] = input_spec(spec, upload_files)
    outputs = schema.get("outputs") or {}
    inputs: dict[str, Any] = {"required": required}
    if optional:
        inputs["optional"] = optional
    return {
        "input": inputs,
        "input_order": {key: list(value) for key, value in inputs.items()},
        "output": list(outputs.values()),
        "output_is_list": [False] * len(outputs),
        "output_name": list(outputs),
        "output_tooltips": [""] * len(outputs),
        "name": schema["type"],
        "display_name": schema.get("display_name") or schema["type"],
        "description": schema.get("description") or "",
        "python_module": f"easel.{schema.get('plugin') or 'plugin'}",
        "category": schema.get("category") or "easel",
        "output_node": bool(schema.get("output_node")),
        "deprecated": False,
        "experimental": False,
    }


def alias_info(
    class_type: str, node_map: Any, schema: Mapping[str, Any], upload_files: list[str] | None = None
) -> dict[str, Any]:
    """A ComfyUI node type the importer maps onto `schema`'s Easel node, in ComfyUI's shape:
    ComfyUI's input names, widgets in the order of its `widgets_values`, its output slots."""
    easel_inputs = schema["inputs"]
    widgets = [w for w in node_map.widgets if w in node_map.inputs]
    sockets = [name for name in node_map.inputs if name not in widgets]
    required: dict[str, Any] = {}
    optional: dict[str, Any] = {}
    for name in [*sockets, *widgets]:
        if name in node_map.ignored:
            continue
        spec = easel_inputs.get(node_map.inputs[name])
        if spec is None:
            continue
        entry = input_spec(spec, upload_files)
        values = node_map.values.get(node_map.inputs[name])
        if values and isinstance(entry[0], list):  # ComfyUI's names for Easel's choices
            reverse = {v: k for k, v in values.items()}
            entry[0] = [reverse.get(choice, choice) for choice in entry[0]]
        elif values and not isinstance(entry[0], list):
            entry[0] = list(values)
        if name in node_map.seeded:
            entry = [
                entry[0],
                {**(entry[1] if len(entry) > 1 else {}), "control_after_generate": True},
            ]
        optional_socket = name in node_map.optional or (
            not is_required(spec) and name not in widgets
        )
        (optional if optional_socket else required)[name] = entry
    easel_outputs = schema.get("outputs") or {}
    output_types = [easel_outputs.get(out, "*") if out else "*" for out in node_map.outputs]
    output_names = [out or "unsupported" for out in node_map.outputs]
    inputs: dict[str, Any] = {"required": required}
    if optional:
        inputs["optional"] = optional
    description = f"ComfyUI's {class_type}, run by Easel's {node_map.easel_type}. " + (
        schema.get("description") or ""
    )
    return {
        "input": inputs,
        "input_order": {key: list(value) for key, value in inputs.items()},
        "output": output_types,
        "output_is_list": [False] * len(output_types),
        "output_name": output_names,
        "output_tooltips": [""] * len(output_types),
        "name": class_type,
        "display_name": class_type,
        "description": description.strip(),
        "python_module": "easel.comfy",
        "category": schema.get("category") or ALIAS_CATEGORY,
        "output_node": bool(schema.get("output_node")),
        "deprecated": False,
        "experimental": False,
    }


def node_maps(registry: Registry) -> dict[str, Any]:
    """The importer's table with the registry's plugin mappings."""
    from easel.comfy.mapping import merged_node_maps

    try:
        return dict(merged_node_maps(registry.comfy_nodes))
    except ValueError:
        from easel.comfy.mapping import NODE_MAPS

        return dict(NODE_MAPS)


def object_info(
    registry: Registry, upload_files: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Every node as ComfyUI lists it: Easel's nodes, then ComfyUI names Easel does not use."""
    schemas = registry.schemas()
    out = {name: node_info(schema, upload_files) for name, schema in schemas.items()}
    for class_type, node_map in sorted(node_maps(registry).items()):
        if class_type in out or node_map.easel_type not in schemas:
            continue
        out[class_type] = alias_info(
            class_type, node_map, schemas[node_map.easel_type], upload_files
        )
    return out


def _native_map(node_type: Any) -> Any:
    """An identity importer entry for one Easel node type (its own names and outputs)."""
    from easel.comfy.mapping import NodeMap

    return NodeMap(
        node_type.type,
        {name: name for name in node_type.inputs},
        tuple(node_type.outputs),
        optional=frozenset(name for name, spec in node_type.inputs.items() if not spec.required),
    )


def is_native(entry: Mapping[str, Any], registry: Registry) -> bool:
    """Whether a prompt node is an Easel node as Easel declares it (name and input names)."""
    node_type = registry.get(str(entry.get("class_type", "")))
    inputs = entry.get("inputs")
    return (
        node_type is not None
        and isinstance(inputs, Mapping)
        and set(inputs) <= set(node_type.inputs)
    )


def prompt_to_workflow(prompt: Any, registry: Registry) -> dict[str, Any]:
    """An API-format prompt (Easel names, ComfyUI names, or both) as an Easel workflow.

    Raises WorkflowError listing every problem (node ids are the prompt's)."""
    from easel.comfy.convert import to_easel

    if not isinstance(prompt, Mapping) or not prompt:
        raise WorkflowError(
            [
                Problem(
                    '"prompt" must be a non-empty object of nodes '
                    '({id: {"class_type": ..., "inputs": {...}}})'
                )
            ]
        )
    rewritten: dict[str, Any] = {}
    extra = {k: v for k, v in registry.comfy_nodes.items()}
    for node_id, entry in prompt.items():
        if isinstance(entry, Mapping) and is_native(entry, registry):
            node_type = registry.get(entry["class_type"])
            assert node_type is not None  # is_native found it
            alias = _NATIVE_PREFIX + node_type.type
            extra.setdefault(alias, _native_map(node_type))
            rewritten[str(node_id)] = {**entry, "class_type": alias}
        else:
            rewritten[str(node_id)] = entry
    try:
        workflow = to_easel(rewritten, extra)
    except WorkflowError as exc:
        raise WorkflowError(
            [
                Problem(
                    p.message.replace(_NATIVE_PREFIX, ""),
                    node=p.node,
                    input=p.input,
                    node_type=p.node_type.replace(_NATIVE_PREFIX, "") if p.node_type else None,
                )
                for p in exc.problems
            ]
        ) from None
    return workflow
