"""The loader pieces families share (easel.models.transformer_files' factories, the one-frame
VAE outputs of easel.models.vae_outputs): what each family module gets from them."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from easel.models.errors import ModelError
from easel.models.transformer_files import unprefixed
from easel.models.vae_outputs import OneFrameVae, decoded, encoded, frames_as_images


def test_unprefixed_strips_the_prefix_or_names_what_is_missing() -> None:
    state = {"model.diffusion_model.a": 1, "model.diffusion_model.b.c": 2, "vae.d": 3}
    assert unprefixed(state, "model.diffusion_model.", "none") == {"a": 1, "b.c": 2}
    assert unprefixed(state, "", "none") == state
    with pytest.raises(ModelError, match=r"^no transformer here$"):
        unprefixed(state, None, "no transformer here")


class _Doubling(OneFrameVae):
    def encode(self, images: torch.Tensor, return_dict: bool = True) -> Any:
        return encoded(images * 2, return_dict)

    def decode(self, latents: torch.Tensor, return_dict: bool = True) -> Any:
        return decoded(frames_as_images(latents) + 1, return_dict)


def test_one_frame_vae_outputs_read_as_diffusers_outputs() -> None:
    vae = _Doubling()
    images = torch.arange(8.0).view(1, 2, 2, 2)
    assert torch.equal(vae.encode(images).latent_dist.mode(), images * 2)
    assert torch.equal(vae.encode(images).latent_dist.sample(None), images * 2)
    assert torch.equal(vae.encode(images, return_dict=False)[0].mode(), images * 2)
    assert torch.equal(vae.decode(images).sample, images + 1)
    assert torch.equal(vae(images), images * 2 + 1)  # forward: decode(encode(x).mode())


def test_frames_as_images_is_batch_major() -> None:
    video = torch.arange(2 * 3 * 4.0).view(2, 1, 3, 2, 2)  # [B=2, C=1, F=3, 2, 2]
    frames = frames_as_images(video)
    assert frames.shape == (6, 1, 2, 2)
    assert torch.equal(frames[4], video[1, :, 1])  # batch 1, frame 1
    assert frames_as_images(frames) is frames
