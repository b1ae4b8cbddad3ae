"""Conditioning kept in files, in ComfyUI's layout: ConditioningLoader reads one from the
embeddings folder (Marigold v2's templates load their task's prompt so), SaveConditioning writes
one to the output folder (ComfyUI's pair of nodes, comfy_extras/nodes_cond.py).

ComfyUI's file is a safetensors file: the tensor `conditioning` (the text embeddings
[1, T, D]), each other tensor an option of that name, a list of tensors as `name.0`, `name.1`,
..., and the plain options (numbers, strings) as JSON under the metadata key
`conditioning_options`. Files saved before ComfyUI wrote metadata hold tensors only.

Easel's CONDITIONING is a dict whose keys the families read; the options ComfyUI's text
encoders and conditioning nodes write map onto it by name (OPTION_KEYS). An option with no Easel
key is refused naming it rather than dropped, as it would change what the model sees.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Conditioning
from easel.nodes.image_io import output_folder
from easel.nodes.model_access import discovered, manager, model_errors

KIND = "embeddings"
EMBEDDINGS = "conditioning"  # the file's text embeddings
METADATA = "conditioning_options"  # the file's plain (non-tensor) options, as JSON
# ComfyUI's conditioning option -> Easel's conditioning key
OPTION_KEYS = {
    "pooled_output": "pooled",
    "attention_mask": "attention_mask",
    "guidance": "guidance",
    "reference_latents": "reference_latents",
    "reference_latents_method": "reference_latents_method",
}
EASEL_KEYS = {easel: comfy for comfy, easel in OPTION_KEYS.items()}
# Easel's own entries that are no part of the conditioning ComfyUI saves: the default negative
# (the empty prompt, kept beside the prompt; the loaded conditioning gets zeros, as ComfyUI's
# samplers make no negative of their own either)
NOT_SAVED = frozenset({"uncond"})


def _path(ctx: Context, name: str) -> Path:
    with model_errors("conditioning_name"):
        return Path(manager(ctx).resolve(KIND, name))


def _fingerprint(ctx: Context, inputs: dict[str, Any]) -> str:
    """The file's path, size and time, so a replaced file is read again."""
    try:
        path = _path(ctx, str(inputs.get("conditioning_name", "")))
        stat = path.stat()
    except (NodeError, OSError):
        return "missing"
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def read_conditioning(path: Path) -> dict[str, Any]:
    """A CONDITIONING from a file in ComfyUI's layout (float tensors as float32 on the CPU)."""
    import torch
    from safetensors import SafetensorError, safe_open

    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"{path.name} is not a .safetensors file (ComfyUI saves conditioning so)")
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            names = file.keys()
            tensors = {key: file.get_tensor(key) for key in names}
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path.name} cannot be read as safetensors: {exc}") from exc
    if EMBEDDINGS not in tensors:
        found = ", ".join(sorted(tensors)[:5]) or "no tensors"
        raise ValueError(
            f"{path.name} holds no '{EMBEDDINGS}' tensor (it has {found}): is it a "
            "textual-inversion embedding rather than a saved conditioning?"
        )

    def as_float(value: torch.Tensor) -> torch.Tensor:
        return value.float() if value.is_floating_point() else value

    options: dict[str, Any] = {}
    try:
        plain = json.loads(metadata.get(METADATA, "{}"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name}: its '{METADATA}' metadata is not JSON") from exc
    if not isinstance(plain, dict):
        raise ValueError(f"{path.name}: its '{METADATA}' metadata is not a JSON object")
    options.update(plain)
    lists: dict[str, dict[int, Any]] = {}
    for key, value in tensors.items():
        if key == EMBEDDINGS:
            continue
        name, _, index = key.rpartition(".")
        if name and index.isdigit():
            lists.setdefault(name, {})[int(index)] = as_float(value)
        else:
            options[key] = as_float(value)
    options.update({name: [items[i] for i in sorted(items)] for name, items in lists.items()})
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise ValueError(
            f"{path.name} holds the conditioning option(s) {', '.join(unknown)}, which Easel "
            f"has no equivalent for (it reads {', '.join(OPTION_KEYS)})"
        )
    embeds = as_float(tensors[EMBEDDINGS])
    if embeds.dim() == 2:
        embeds = embeds[None]
    cond: dict[str, Any] = {"embeds": embeds}
    cond.update({OPTION_KEYS[k]: v for k, v in options.items() if v is not None})
    return cond


@node(category="loaders", outputs={"conditioning": Conditioning}, fingerprint=_fingerprint)
def ConditioningLoader(
    ctx: Context, conditioning_name: str = Input(choices=discovered(KIND))
) -> Any:
    """A conditioning saved in a file of the embeddings folder (ComfyUI's Load Conditioning):
    a prompt encoded once, used without its text encoder. The file is ComfyUI's layout (what
    SaveConditioning writes): the tensor `conditioning`, other tensors and metadata its
    options (pooled output, attention mask, guidance, reference latents)."""
    path = _path(ctx, conditioning_name)
    try:
        return {"conditioning": read_conditioning(path)}
    except ValueError as exc:
        raise NodeError(str(exc), "conditioning_name") from exc


def conditioning_file(conditioning: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors and metadata of ComfyUI's file for a CONDITIONING."""
    import torch

    if not isinstance(conditioning, dict) or conditioning.get("embeds") is None:
        raise ValueError("the conditioning has no text embeddings ('embeds') to save")
    tensors: dict[str, Any] = {EMBEDDINGS: conditioning["embeds"]}
    plain: dict[str, Any] = {}
    for key, value in conditioning.items():
        if key == "embeds" or key in NOT_SAVED or value is None:
            continue
        name = EASEL_KEYS.get(key)
        if name is None:
            raise ValueError(
                f"the conditioning's {key!r} has no place in ComfyUI's conditioning file "
                f"(it keeps the embeddings and {', '.join(EASEL_KEYS)})"
            )
        if isinstance(value, torch.Tensor):
            tensors[name] = value
        elif isinstance(value, list | tuple) and all(isinstance(t, torch.Tensor) for t in value):
            tensors.update({f"{name}.{i}": t for i, t in enumerate(value)})
        elif isinstance(value, bool | int | float | str):
            plain[name] = value
        else:
            raise ValueError(f"the conditioning's {key!r} ({type(value).__name__}) can't be saved")
    out = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    return out, {METADATA: json.dumps(plain)}


def _numbered(folder: Path, stem: str) -> int:
    """One more than the highest number of the folder's `stem_NNNNN_.safetensors` files."""
    pattern = re.compile(re.escape(stem) + r"_(\d+)_\.safetensors$")
    found = [int(m.group(1)) for e in os.scandir(folder) if (m := pattern.match(e.name))]
    return max(found, default=0) + 1


@node(category="conditioning", outputs={"conditioning": Conditioning}, output_node=True)
def SaveConditioning(
    ctx: Context,
    conditioning: Conditioning,
    filename_prefix: str = Input("conditioning/easel"),
) -> Any:
    """Save a conditioning as ComfyUI does (prefix_NNNNN_.safetensors in the output folder);
    moved to models/embeddings, ConditioningLoader reads it back, e.g. to skip the text
    encoder. Easel's default negative (the empty prompt) is not saved."""
    from safetensors.torch import save_file

    try:
        tensors, metadata = conditioning_file(conditioning)
    except ValueError as exc:
        raise NodeError(str(exc), "conditioning") from exc
    folder, stem = output_folder(ctx, filename_prefix)
    folder.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=folder)
    os.close(handle)
    temp = Path(temp_name)
    try:
        save_file(tensors, str(temp), metadata=metadata)
        number = _numbered(folder, stem)
        while True:  # a name is claimed in one step and never replaces a file
            target = folder / f"{stem}_{number:05d}_.safetensors"
            try:
                os.link(temp, target)
                break
            except FileExistsError:
                number += 1
    finally:
        temp.unlink(missing_ok=True)
    root = Path(ctx.output_dir).resolve()
    return {
        "conditioning": conditioning,
        "ui": {"files": [target.relative_to(root).as_posix()]},
    }


NODES = [ConditioningLoader, SaveConditioning]
