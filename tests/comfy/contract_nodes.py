"""Stand-ins with the contracted signatures of the diffusion nodes (issue 3, item 2), used only
where the real registry does not have the node yet; they are never run."""

from __future__ import annotations

from typing import Any, Literal

from easel.core.node import Input, node
from easel.core.types import Clip, Conditioning, Image, Latent, Model, Vae

SAMPLERS = Literal["euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms",
                   "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_sde", "ddim", "uni_pc", "lcm"]
SCHEDULERS = Literal["normal", "karras", "exponential", "sgm_uniform", "simple", "beta"]
METHODS = Literal["nearest", "bilinear", "bicubic", "lanczos", "area"]
LATENT_METHODS = Literal["nearest-exact", "bilinear", "bicubic", "area"]


def _never_run(**_: Any) -> Any:
    raise AssertionError("contract stand-ins are for validation only")


@node(outputs={"model": Model, "clip": Clip, "vae": Vae})
def CheckpointLoader(name: str) -> Any:
    return _never_run()


@node(outputs={"conditioning": Conditioning})
def TextEncode(clip: Clip, text: str = Input("", multiline=True)) -> Any:
    return _never_run()


@node(outputs={"latent": Latent})
def EmptyLatent(width: int = Input(512, ge=8), height: int = Input(512, ge=8),
                batch_size: int = Input(1, ge=1)) -> Any:
    return _never_run()


@node(outputs={"latent": Latent})
def KSampler(model: Model, positive: Conditioning, negative: Conditioning, latent: Latent,
             seed: int = Input(0, ge=0), steps: int = Input(20, ge=1), cfg: float = 7.0,
             sampler_name: SAMPLERS = "euler", scheduler: SCHEDULERS = "normal",
             denoise: float = Input(1.0, ge=0, le=1)) -> Any:
    return _never_run()


@node(outputs={"image": Image})
def VAEDecode(vae: Vae, latent: Latent) -> Any:
    return _never_run()


@node(outputs={"latent": Latent})
def VAEEncode(vae: Vae, image: Image) -> Any:
    return _never_run()


@node(outputs={"image": Image})
def Upscale(image: Image, method: METHODS = "bicubic", scale: float = 2.0, width: int = 0,
            height: int = 0) -> Any:
    return _never_run()


@node(outputs={"latent": Latent})
def LatentUpscale(latent: Latent, method: LATENT_METHODS = "nearest-exact", scale: float = 2.0,
                  width: int = 0, height: int = 0) -> Any:
    return _never_run()


NODES = [CheckpointLoader, TextEncode, EmptyLatent, KSampler, VAEDecode, VAEEncode, Upscale,
         LatentUpscale]
