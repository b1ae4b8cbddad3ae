"""The Qwen-Image-Layered network adapter, as QwenImageLayeredPipeline calls the transformer:
the layered latent [B, 16, F, h, w] (F = layers + 1) packed frame by frame into one sequence
of 2x2 patches, one `img_shapes` entry per frame (the layered rope gives frame f the index f),
the reference latent's tokens after them (the rope's last entry, frame index -1), and
`additional_t_cond` 0. The loop keeps the latent 5-D; the prediction for the frames' tokens is
unpacked back to it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from easel.models.conditioning import Cond
from easel.models.flux_denoiser import pack, unpack
from easel.models.qwen_image_denoiser import QwenImageNetwork, timestep_zero_references


class QwenLayeredNetwork(QwenImageNetwork):
    """Calls a Qwen-Image-Layered QwenImageTransformer2DModel on a layered latent."""

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        import torch

        if x.dim() != 5:
            raise ValueError(
                "Qwen-Image-Layered samples a layered latent [B, 16, layers + 1, h, w]: make "
                "it with EmptyQwenImageLayeredLatentImage"
            )
        batch, _, frames, height, width = x.shape
        if height % self.patch or width % self.patch:
            raise ValueError(
                f"Qwen-Image packs latents in {self.patch}x{self.patch} patches: the image's "
                f"width and height must be multiples of {8 * self.patch}"
            )
        tokens = torch.cat([pack(x[:, :, f], self.patch) for f in range(frames)], dim=1)
        count = tokens.shape[1]
        shapes = [(1, height // self.patch, width // self.patch)] * frames
        added = cond.added or {}
        if added.get("control"):
            raise ValueError("Qwen-Image-Layered takes no ControlNet in Easel")
        reference = added.get("reference")
        if reference is not None:
            ref_tokens, ref_shapes = reference
            tokens = torch.cat([tokens, ref_tokens.to(tokens.dtype)], dim=1)
            shapes = [*shapes, *ref_shapes]
        zero_cond = bool(added.get("zero_cond_t")) and reference is not None
        flag = torch.zeros(batch, dtype=torch.long, device=x.device)
        with (
            timestep_zero_references(self.transformer, zero_cond),
            frames_only(self.transformer, reference is None),
        ):
            out = self.call(
                hidden_states=tokens,
                timestep=t.expand(batch).to(x.dtype) / 1000,
                encoder_hidden_states=cond.encoder_hidden_states,
                encoder_hidden_states_mask=added.get("mask"),
                img_shapes=[shapes] * batch,
                additional_t_cond=flag,
                return_dict=False,
            )[0]
        per_frame = out[:, :count].chunk(frames, dim=1)
        return torch.stack([unpack(p, height, width, self.patch) for p in per_frame], dim=2)


@contextmanager
def frames_only(transformer: Any, enabled: bool) -> Iterator[None]:
    """Without a reference image (text to layers), the rope of the frames alone: diffusers'
    layered rope always reads its last `img_shapes` entry as the condition image (frame index
    -1), which would put the last layer there. While `enabled`, the rope is asked for the
    frames plus a one-token condition entry whose row is dropped, so that frame f keeps index
    f and the text's positions start where they start with a reference."""
    rope = getattr(transformer, "pos_embed", None)
    if not enabled or rope is None:
        yield
        return
    original = rope.forward

    def forward(video_fhw: Any, max_txt_seq_len: Any, device: Any = None) -> Any:
        shapes = video_fhw[0] if isinstance(video_fhw, list) else video_fhw
        shapes = list(shapes) if isinstance(shapes, list) else [shapes]
        frames, text = original([[*shapes, (1, 1, 1)]], max_txt_seq_len, device=device)
        return frames[:-1], text

    rope.forward = forward
    try:
        yield
    finally:
        del rope.forward
