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
    "easel.nodes.custom_sampling",
    "easel.nodes.skip_layer_guidance",
    "easel.nodes.inpaint",
    "easel.nodes.ip2p",
    "easel.nodes.vae",
    "easel.nodes.vae_tiled",
    "easel.nodes.attention_backend",
    "easel.nodes.prior",
    "easel.nodes.upscale",
    "easel.nodes.upscale_models",
    "easel.nodes.clipscore",
    "easel.nodes.image_io",
    "easel.nodes.comfy_compat",
    "easel.nodes.switches",
    "easel.nodes.math_expression",
    "easel.nodes.text_utils",
    "easel.nodes.text_generate",
    "easel.nodes.json_utils",
    "easel.nodes.template_utils",
    "easel.nodes.image_filters",
    "easel.nodes.image_utils",
    "easel.nodes.mask_utils",
    "easel.nodes.loaders_split",
    "easel.nodes.flux",
    "easel.nodes.qwen_image",
    "easel.nodes.qwen_image21",
    "easel.nodes.sd3",
    "easel.nodes.hidream",
    "easel.nodes.chroma",
    "easel.nodes.flux2",
    "easel.nodes.joyimage",
    "easel.nodes.flux3",
    "easel.nodes.bounding_boxes",
    "easel.nodes.ideogram4",
    "easel.nodes.fibo2",
    "easel.nodes.minimax_h3",
    "easel.nodes.hunyuan15",
    "easel.nodes.mage_flow",
    "easel.nodes.boogu",
    "easel.nodes.lumina",
    "easel.nodes.latent_cut",
    "easel.nodes.qwen_layered",
    "easel.nodes.camera_angle",
    "easel.nodes.controlnet_inpaint",
    "easel.nodes.lotus",
    "easel.nodes.turbo_scheduler",
    "easel.nodes.clip_vision",
    "easel.nodes.style_model",
    "easel.nodes.marigold",
    "easel.nodes.sam3",
    "easel.nodes.depth_anything3",
    "easel.nodes.conditioning_files",
    "easel.nodes.reroute",
    "easel.nodes.model_patches",
    "easel.nodes.anima",
    "easel.nodes.painter",
    "easel.nodes.wan",
)


@hookimpl
def register_socket_types(register: Callable[..., None]) -> None:
    from easel.nodes.depth_anything3 import SOCKET_TYPES
    from easel.nodes.socket_checks import CHECKS

    for name, (description, check) in {**CHECKS, **SOCKET_TYPES}.items():
        register(name, description, check=check)


@hookimpl
def register_cache_codecs(register: Callable[[Any], None]) -> None:
    from easel.nodes.cache_codecs import CODECS

    for codec in CODECS:
        register(codec)


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    for name in MODULES:
        for node_type in importlib.import_module(name).NODES:
            register(node_type)
