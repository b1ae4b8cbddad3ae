"""The built-in plugin: registers every built-in node type through the `register_nodes` hook."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from easel.core.plugins import hookimpl

# Each module lists its node types in NODES. Modules import torch lazily, inside the nodes.
MODULES = (
    "easel.nodes.primitives",
    "easel.nodes.loaders",
    "easel.nodes.lora",
    "easel.nodes.conditioning",
    "easel.nodes.controlnet",
    "easel.nodes.latent",
    "easel.nodes.sampling",
    "easel.nodes.vae",
    "easel.nodes.prior",
    "easel.nodes.upscale",
    "easel.nodes.upscale_models",
    "easel.nodes.clipscore",
    "easel.nodes.image_io",
    "easel.nodes.comfy_compat",
    "easel.nodes.shapes_render",
)


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    for name in MODULES:
        for node_type in importlib.import_module(name).NODES:
            register(node_type)
