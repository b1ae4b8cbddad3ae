"""The MiniMax H3 network adapter of the sampler loop: one latent frame (an image) sampled with
MiniMaxH3Transformer3DModel as MiniMaxH3ModularPipeline calls it for text-to-video, the packed
sequence `[text | audio | video]` built by the pipeline's own layout helpers
(`build_packed_sequence`, `build_row_timesteps`, `patchify_video_latents`).

- The loop keeps the video latent [B, 24, h, w] (normalised; one frame). The DiT takes `t = 1 -
  sigma` (sigma = the loop's timestep / 1000) and predicts the data-ward velocity, so Easel's
  flow prediction (noise - image) is its negation.
- MiniMax H3 denoises a soundtrack with every video: 2 stereo audio latents for one frame (the
  pipeline's count for 1 frame at 24 fps), whose rows the video attends to. The adapter
  carries that stream itself: it starts from Gaussian noise (seeded from the loop's first
  input, so a seed gives one image), sits at the audio schedule's level for the video's
  (shift 3 against the video's 12 over one base grid, as the pipeline's two schedulers pair
  them) and steps with Euler between the levels the loop visits, as the pipeline's audio
  scheduler steps it. The audio is not returned: an image keeps its video frame only.
  ComfyUI instead carries the audio inside its packed latent and steps it with the chosen
  sampler; with euler both are the pipeline's steps.
- With classifier-free guidance the audio follows the conditional prediction (MiniMax H3 is
  guidance-distilled: BasicGuider / cfg 1 makes one call per step, as the pipeline).
- A latent of odd width or height (an image a multiple of 16 pixels but not of 32) is padded
  to whole 2x2 patches, circularly, and the prediction cropped back, as ComfyUI's MiniMax H3
  model pads (`pad_to_patch_size`); the pipeline itself takes multiples of 32 only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from easel.models.conditioning import Cond
from easel.models.families import minimax_h3

VIDEO_TAG, TEXT_TAG, AUDIO_TAG = 0, 1, 2  # the DiT's modality tags (a checkpoint contract)


@dataclass
class Layout:
    """The packed sequence of one (text length, latent size) for the transformer."""

    position_ids: Any
    token_tags: Any
    video_indices: Any
    audio_indices: Any
    text_indices: Any


def build_layout(text_len: int, height: int, width: int, audio_latents: int, device: Any) -> Layout:
    """`[text | audio | video]` of one latent frame, by the pipeline's layout step."""
    import torch
    from diffusers.modular_pipelines.minimax_h3.before_denoise import MiniMaxH3PrepareLayoutStep

    tags = torch.full((text_len,), TEXT_TAG, dtype=torch.long)
    position_ids, token_tags, video, audio, text, _, _ = (
        MiniMaxH3PrepareLayoutStep.build_packed_sequence(
            tags,
            1,
            height,
            width,
            audio_latents,
            (1, minimax_h3.PATCH, minimax_h3.PATCH),
            minimax_h3.AUDIO_CHANNELS,
            AUDIO_TAG,
            VIDEO_TAG,
        )
    )
    return Layout(
        position_ids.to(device),
        token_tags.to(device),
        video.to(device),
        audio.to(device),
        text.to(device),
    )


def row_timesteps(layout: Layout, t_video: float, t_audio: float) -> tuple[Any, Any]:
    """(distinct timesteps, each row's index into them), by the pipeline's timestep step."""
    from diffusers.modular_pipelines.minimax_h3.before_denoise import MiniMaxH3SetTimestepsStep

    return MiniMaxH3SetTimestepsStep.build_row_timesteps(  # type: ignore[no-any-return]
        layout.video_indices.cpu(),
        layout.audio_indices.cpu(),
        0,
        0,
        int(layout.text_indices.numel()),
        t_video,
        t_audio,
        t_video,
        1.0,
    )


def patchify(latents: Any) -> Any:
    """[B, C, h, w] (one frame) -> rows [B, h/2 * w/2, C * 4], the pipeline's order."""
    from diffusers.modular_pipelines.minimax_h3.before_denoise import patchify_video_latents

    batch = latents.shape[0]
    rows = patchify_video_latents(latents.unsqueeze(2), (1, minimax_h3.PATCH, minimax_h3.PATCH))
    return rows.reshape(batch, -1, rows.shape[-1])


def unpatchify(rows: Any, channels: int, height: int, width: int) -> Any:
    """The inverse of `patchify`: rows [B, N, C * 4] -> [B, C, h, w]."""
    p = minimax_h3.PATCH
    batch = rows.shape[0]
    x = rows.reshape(batch, height // p, width // p, channels, p, p)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(batch, channels, height, width)


def pad_to_patches(latents: Any) -> Any:
    """[B, C, h, w] padded at the bottom and right to even h and w, circularly (ComfyUI's
    `pad_to_patch_size`)."""
    import torch

    p = minimax_h3.PATCH
    pad_h, pad_w = (-latents.shape[-2]) % p, (-latents.shape[-1]) % p
    if not pad_h and not pad_w:
        return latents
    return torch.nn.functional.pad(latents, (0, pad_w, 0, pad_h), mode="circular")


def audio_noise(first_input: Any, rows: int, channels: int) -> Any:
    """The audio stream's starting noise [B, rows, channels]: Gaussian from a CPU generator
    seeded by the bytes of the loop's first input (so one seed gives one image)."""
    import torch

    data = first_input.detach().float().cpu().contiguous().numpy().tobytes()
    seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "little") & ((1 << 63) - 1)
    generator = torch.Generator("cpu").manual_seed(seed)
    return torch.randn(first_input.shape[0], rows, channels, generator=generator)


class MiniMaxH3Network:
    """Calls a MiniMaxH3Transformer3DModel (`call`: the module, or it with LoRA patches or an
    attention backend bound) on one latent frame, carrying the audio stream."""

    def __init__(self, transformer: Any, call: Any, family: Any) -> None:
        self.transformer, self.call, self.family = transformer, call, family
        self.step, self.total = 0, 0
        self.audio: Any = None  # [B, 2 * A, 32] at the current level
        self.pending: tuple[int, float, Any] | None = None  # (step, audio level, velocity)
        self.layouts: dict[tuple[int, int, int], Layout] = {}

    def condition(
        self,
        cond: dict[str, Any],
        batch: int,
        device: Any,
        dtype: Any,
        *,
        pixel_size: tuple[int, int],
        negative: bool = False,
    ) -> Cond:
        import torch

        if cond.get("control"):
            raise ValueError("ControlNet conditioning is not supported for MiniMax H3 models")
        if cond.get("reference_latents"):
            raise ValueError(
                "MiniMax H3 here makes images from text: it takes no reference latents"
            )
        embeds = cond.get("embeds")
        width = int(self.transformer.config.text_dim)
        if embeds is None or embeds.dim() != 3 or embeds.shape[-1] != width:
            got = "none" if embeds is None else f"shape {tuple(embeds.shape)}"
            raise ValueError(
                f"MiniMax H3 needs Qwen3-VL hidden states of width {width} (got {got}): encode "
                "the prompt with a MiniMax H3 CLIP (TextEncoderLoader type minimax)"
            )
        hidden = torch.as_tensor(embeds).to(device=device, dtype=dtype)
        if hidden.shape[0] != batch:
            hidden = hidden[:1].expand(batch, -1, -1)
        return Cond(hidden.contiguous(), {"negative": negative}, None)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call: the audio follows the conditional one

    def _layout(self, text_len: int, height: int, width: int, device: Any) -> Layout:
        key = (text_len, height, width)
        if key not in self.layouts:
            audio = minimax_h3.audio_latents_for(1)
            self.layouts[key] = build_layout(text_len, height, width, audio, device)
        return self.layouts[key]

    def _audio_at(self, x: Any, sigma_audio: float, rows: int, channels: int) -> Any:
        """The audio stream at this call's level: started from noise, or Euler-stepped from the
        previous step's level with its conditional velocity."""
        if self.audio is None:
            noise = audio_noise(x, rows, channels).to(device=x.device, dtype=x.dtype)
            self.audio = sigma_audio * noise  # the clean audio is unknown: 0 below the noise
        elif self.pending is not None and self.pending[0] < self.step:
            _, level, velocity = self.pending
            self.audio = (self.audio.float() + (sigma_audio - level) * velocity).to(x.dtype)
            self.pending = None
        return self.audio

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        import torch

        assert cond.added is not None
        _, channels, rows, columns = x.shape
        x = pad_to_patches(x)
        height, width = x.shape[-2:]
        sigma = float(t.float().reshape(-1)[0]) / 1000.0
        sigma_audio = minimax_h3.time_shift_sigma(
            sigma, minimax_h3.VIDEO_SHIFT, minimax_h3.AUDIO_SHIFT
        )
        hidden = cond.encoder_hidden_states
        layout = self._layout(hidden.shape[1], height, width, x.device)
        audio_rows = int(layout.audio_indices.numel())
        audio_channels = int(self.transformer.config.audio_in_channels)
        audio = self._audio_at(x, sigma_audio, audio_rows, audio_channels)
        t_video = float(torch.tensor(1.0 - sigma, dtype=torch.float32))
        t_audio = float(torch.tensor(1.0 - sigma_audio, dtype=torch.float32))
        timesteps, indices = row_timesteps(layout, t_video, t_audio)
        video_out, audio_out = self.call(
            hidden_states=patchify(x),
            audio_hidden_states=audio,
            encoder_hidden_states=hidden,
            timestep=timesteps.to(x.device),
            timestep_indices=indices.to(x.device),
            token_tags=layout.token_tags,
            position_ids=layout.position_ids,
            video_indices=layout.video_indices,
            audio_indices=layout.audio_indices,
            text_indices=layout.text_indices,
            return_dict=False,
        )
        if not cond.added.get("negative"):
            self.pending = (self.step, sigma_audio, -audio_out.float())
        velocity = -unpatchify(video_out, channels, height, width).to(x.dtype)
        return velocity[:, :, :rows, :columns]
