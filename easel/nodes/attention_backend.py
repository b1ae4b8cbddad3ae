"""ModelAttentionBackend (ComfyUI's "Model Attention Backend"): which attention implementation
the model's network runs with, through diffusers' attention dispatcher
(`diffusers.models.attention_dispatch.attention_backend`).

Only transformers whose attention goes through diffusers' `dispatch_attention_fn` follow it
(Flux.1, Flux.2, Flux 3, Chroma, Qwen-Image, Z-Image, and the others listed in docs/nodes.md);
the SD / SDXL UNets (AttnProcessor2_0), SD3.5, HiDream and Lumina2 call PyTorch's attention
themselves and are unaffected.
"""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Model

# ComfyUI's choices ("pytorch attention", "comfy kitchen attention") and the other backends
# diffusers has without downloading kernels, by the name the UI shows -> diffusers' name.
BACKENDS = {
    "pytorch attention": "native",
    "comfy kitchen attention": "native",  # no diffusers backend: see ModelAttentionBackend
    "sage attention": "sage",
    "flash attention": "flash",
    "flash attention 3": "_flash_3",
    "xformers attention": "xformers",
    "pytorch math attention": "_native_math",
    "pytorch efficient attention": "_native_efficient",
    "pytorch flash attention": "_native_flash",
    "pytorch cudnn attention": "_native_cudnn",
}
KITCHEN = "comfy kitchen attention"


def check_backend(choice: str, backend: str) -> None:
    """Enter diffusers' attention_backend(backend) once: it checks the backend's package; a
    missing one is a NodeError naming the input and what diffusers asks for."""
    from diffusers.models.attention_dispatch import attention_backend

    try:
        with attention_backend(backend):
            pass
    except (RuntimeError, ValueError, ImportError) as exc:
        raise NodeError(f"{choice!r} is not usable here: {exc}", "attention") from exc


@node(category="advanced/model", outputs={"model": Model})
def ModelAttentionBackend(
    ctx: Context,
    model: Model,
    attention: str = Input("pytorch attention", choices=list(BACKENDS)),
) -> Any:
    """The same model with its network run under `attention` (diffusers' attention
    dispatcher): "pytorch attention" is PyTorch's scaled_dot_product_attention (diffusers'
    "native", its default); sage, flash and xformers need their packages installed. "comfy
    kitchen attention" (ComfyUI's INT8 kernels) has no diffusers backend: it runs as pytorch
    attention, with a warning. Only transformers using diffusers' dispatch_attention_fn
    (Flux, Chroma, Qwen-Image, Z-Image, ...) follow it; SD/SDXL UNets, SD3.5, HiDream and
    Lumina2 are unaffected."""
    backend = BACKENDS[attention]
    if attention == KITCHEN:
        ctx.warn(
            "'comfy kitchen attention' (ComfyUI's INT8 attention kernels) has no diffusers "
            "backend: running pytorch attention instead. It is a speed choice; the image "
            "may differ from ComfyUI's with it only by that kernel's rounding"
        )
    check_backend(attention, backend)
    return model.with_attention(backend)


NODES = [ModelAttentionBackend]
