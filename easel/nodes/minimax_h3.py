"""Audio + video latents (MiniMax H3), as ComfyUI's LTXVSeparateAVLatent splits them.

An audio + video model denoises a soundtrack with every video; ComfyUI's sampler returns both
streams in one latent, and LTXVSeparateAVLatent splits it. Easel's MiniMax H3 runs make images
(one latent frame): the network adapter carries the audio stream while sampling
(easel.models.minimax_denoiser) and the sampler returns the video latent alone, so:

- a latent with an `audio` entry (an audio latent [B, 32, 2, T]) splits into its video latent
  and that audio latent;
- a latent without one (what Easel's sampler returns) is its own video latent, and the audio
  latent is an empty one (no audio frames): an image keeps no soundtrack.
"""

from __future__ import annotations

from typing import Any

from easel.core.node import NodeError, node
from easel.core.types import Latent

AUDIO_CHANNELS = 32  # MiniMax H3's audio latent: 32 channels per stereo channel
STEREO = 2


@node(category="latent/audio-video", outputs={"video_latent": Latent, "audio_latent": Latent})
def SeparateAVLatent(av_latent: Latent) -> Any:
    """Split an audio + video latent into its video latent and its audio latent (empty, with no
    frames, when the latent holds no soundtrack, as Easel's image runs of MiniMax H3 give)."""
    import torch

    samples = av_latent.get("samples")
    if samples is None or not hasattr(samples, "shape"):
        raise NodeError("the latent holds no samples", "av_latent")
    video = {k: v for k, v in av_latent.items() if k != "audio"}
    audio = av_latent.get("audio")
    if audio is None:
        audio = torch.zeros(samples.shape[0], AUDIO_CHANNELS, STEREO, 0)
    elif not hasattr(audio, "shape") or audio.dim() != 4:
        raise NodeError(
            "the latent's audio is not an audio latent [batch, channels, 2, frames]", "av_latent"
        )
    return {"video_latent": video, "audio_latent": {"samples": audio}}


NODES = [SeparateAVLatent]
