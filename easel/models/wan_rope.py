"""ComfyUI's ScaleROPE on diffusers' Wan transformers: the rotary positions of each axis
(frames, rows, columns) scaled and shifted, position i of an axis becoming `shift + scale * i`
(ComfyUI's rope_options: linspace(shift, shift + (n - 1) * scale, n)). ChronoEdit's 14B model
is run with the frames' scale at 7, its two latent frames at positions 0 and 7 (diffusers'
ChronoEditTransformer3DModel hard-codes the same as `rope_temporal_skip_len` 8).

The patch is a model patch (easel.models.handles.ModelHandle.model_patches): for each network
call it hooks the transformer's `rope` module and replaces its (cos, sin) tables by the ones at
the scaled positions, computed by diffusers' own `get_1d_rotary_pos_embed` with the axis sizes
of diffusers' WanRotaryPosEmbed; the shared module itself is never changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

THETA = 10000.0  # WanRotaryPosEmbed's


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """(frames, rows, columns) channels of a head: diffusers' WanRotaryPosEmbed split."""
    side = 2 * (head_dim // 6)
    return head_dim - 2 * side, side, side


@dataclass(frozen=True)
class RopeScale:
    """Scale and shift per axis, in (frames, rows, columns) order."""

    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    shift: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def tables(self, rope: Any, shape: tuple[int, ...], like: Any) -> tuple[Any, Any]:
        """(cos, sin) [1, tokens, 1, head_dim] for a hidden state of `shape`
        [B, C, frames, h, w], as WanRotaryPosEmbed lays them out."""
        import numpy as np
        import torch
        from diffusers.models.embeddings import get_1d_rotary_pos_embed

        patch = rope.patch_size
        counts = [int(n) // int(p) for n, p in zip(shape[2:], patch, strict=True)]
        cos_parts, sin_parts = [], []
        for axis, (dim, count) in enumerate(
            zip(axis_dims(int(rope.attention_head_dim)), counts, strict=True)
        ):
            positions = self.shift[axis] + self.scale[axis] * np.arange(count, dtype=np.float64)
            cos, sin = get_1d_rotary_pos_embed(
                dim,
                positions,
                THETA,
                use_real=True,
                repeat_interleave_real=True,
                freqs_dtype=torch.float64,
            )
            view = [1, 1, 1, -1]
            view[axis] = count
            cos_parts.append(cos.view(*view).expand(*counts, -1))
            sin_parts.append(sin.view(*view).expand(*counts, -1))
        tokens = counts[0] * counts[1] * counts[2]
        cos = torch.cat(cos_parts, dim=-1).reshape(1, tokens, 1, -1)
        sin = torch.cat(sin_parts, dim=-1).reshape(1, tokens, 1, -1)
        return cos.to(like.device, like.dtype), sin.to(like.device, like.dtype)

    def wrap(self, unet: Any, call: Any) -> Any:
        """`call` with the transformer's rope tables at the scaled positions."""
        rope = getattr(unet, "rope", None)
        if rope is None or not hasattr(rope, "patch_size"):
            raise ValueError("ScaleROPE applies to Wan transformers (a `rope` module)")

        def hook(module: Any, inputs: Any, output: Any) -> Any:
            return self.tables(module, tuple(inputs[0].shape), output[0])

        def run(*args: Any, **kwargs: Any) -> Any:
            handle = rope.register_forward_hook(hook)
            try:
                return call(*args, **kwargs)
            finally:
                handle.remove()

        return run
