"""Stand-ins with the contracted signatures of the diffusion nodes (issue 3, item 2) and of the
real-checkpoint nodes (issue 10, item 4), used only where the real registry does not have the
node yet, or has it without a contracted input or output; they are never run."""

from __future__ import annotations

from typing import Any, Literal

from easel.core.node import Input, node
from easel.core.types import (
    Clip,
    Conditioning,
    Image,
    Latent,
    Model,
    UpscaleModel,
    Vae,
    socket_type,
)

Mask = socket_type("MASK")
ControlNet = socket_type("CONTROL_NET")

SAMPLERS = Literal[
    "euler",
    "euler_ancestral",
    "heun",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpmpp_2m",
    "dpmpp_2m_sde",
    "dpmpp_sde",
    "ddim",
    "uni_pc",
    "lcm",
]
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
def EmptyLatent(
    width: int = Input(512, ge=8), height: int = Input(512, ge=8), batch_size: int = Input(1, ge=1)
) -> Any:
    return _never_run()


@node(outputs={"latent": Latent})
def KSampler(
    model: Model,
    positive: Conditioning,
    negative: Conditioning,
    latent: Latent,
    seed: int = Input(0, ge=0),
    steps: int = Input(20, ge=1),
    cfg: float = 7.0,
    sampler_name: SAMPLERS = "euler",
    scheduler: SCHEDULERS = "normal",
    denoise: float = Input(1.0, ge=0, le=1),
) -> Any:
    return _never_run()


@node(outputs={"image": Image})
def VAEDecode(vae: Vae, latent: Latent) -> Any:
    return _never_run()


@node(outputs={"latent": Latent})
def VAEEncode(vae: Vae, image: Image) -> Any:
    return _never_run()


@node(outputs={"image": Image})
def Upscale(
    image: Image, method: METHODS = "bicubic", scale: float = 2.0, width: int = 0, height: int = 0
) -> Any:
    return _never_run()


@node(outputs={"latent": Latent})
def LatentUpscale(
    latent: Latent,
    method: LATENT_METHODS = "nearest-exact",
    scale: float = 2.0,
    width: int = 0,
    height: int = 0,
) -> Any:
    return _never_run()


@node(outputs={"latent": Latent})
def KSamplerAdvanced(
    model: Model,
    positive: Conditioning,
    negative: Conditioning,
    latent: Latent,
    add_noise: bool = True,
    seed: int = Input(0, ge=0),
    steps: int = Input(20, ge=1),
    cfg: float = 7.0,
    sampler_name: SAMPLERS = "euler",
    scheduler: SCHEDULERS = "normal",
    start_at_step: int = Input(0, ge=0),
    end_at_step: int = Input(10000, ge=0),
    return_with_leftover_noise: bool = False,
) -> Any:
    return _never_run()


@node(outputs={"vae": Vae})
def VAELoader(name: str) -> Any:
    return _never_run()


@node(outputs={"model": Model, "clip": Clip})
def LoraLoader(
    model: Model, clip: Clip, name: str, strength_model: float = 1.0, strength_clip: float = 1.0
) -> Any:
    return _never_run()


@node(outputs={"model": Model})
def LoraLoaderModelOnly(model: Model, name: str, strength_model: float = 1.0) -> Any:
    return _never_run()


@node(outputs={"clip": Clip})
def CLIPSetLastLayer(clip: Clip, stop_at_clip_layer: int = Input(-1, le=-1)) -> Any:
    return _never_run()


@node(outputs={"conditioning": Conditioning})
def TextEncodeSDXL(
    clip: Clip,
    width: int = 1024,
    height: int = 1024,
    crop_w: int = 0,
    crop_h: int = 0,
    target_width: int = 1024,
    target_height: int = 1024,
    text_g: str = "",
    text_l: str = "",
) -> Any:
    return _never_run()


@node(outputs={"conditioning": Conditioning})
def TextEncodeSDXLRefiner(
    clip: Clip, ascore: float = 6.0, width: int = 1024, height: int = 1024, text: str = ""
) -> Any:
    return _never_run()


@node(outputs={"control_net": ControlNet})
def ControlNetLoader(name: str) -> Any:
    return _never_run()


@node(outputs={"conditioning": Conditioning})
def ControlNetApply(
    conditioning: Conditioning, control_net: ControlNet, image: Image, strength: float = 1.0
) -> Any:
    return _never_run()


@node(outputs={"positive": Conditioning, "negative": Conditioning})
def ControlNetApplyAdvanced(
    positive: Conditioning,
    negative: Conditioning,
    control_net: ControlNet,
    image: Image,
    strength: float = 1.0,
    start_percent: float = 0.0,
    end_percent: float = 1.0,
    vae: Vae | None = None,
) -> Any:
    return _never_run()


@node(outputs={"image": Image, "mask": Mask})
def LoadImage(image: str) -> Any:
    return _never_run()


@node(outputs={"latent": Latent})
def VAEEncodeForInpaint(image: Image, vae: Vae, mask: Mask, grow_mask_by: int = 6) -> Any:
    return _never_run()


@node(outputs={"positive": Conditioning, "negative": Conditioning, "latent": Latent})
def InpaintModelConditioning(
    positive: Conditioning,
    negative: Conditioning,
    vae: Vae,
    image: Image,
    mask: Mask,
    noise_mask: bool = True,
) -> Any:
    return _never_run()


@node(outputs={"latent": Latent})
def SetLatentNoiseMask(latent: Latent, mask: Mask) -> Any:
    return _never_run()


@node(outputs={"upscale_model": UpscaleModel})
def UpscaleModelLoader(name: str) -> Any:
    return _never_run()


@node(outputs={"image": Image})
def ImageUpscaleWithModel(upscale_model: UpscaleModel, image: Image) -> Any:
    return _never_run()


@node(outputs={"model": Model})
def ModelSamplingDiscrete(
    model: Model, sampling: Literal["eps", "v_prediction"] = "eps", zsnr: bool = False
) -> Any:
    return _never_run()


NODES = [
    CheckpointLoader,
    TextEncode,
    EmptyLatent,
    KSampler,
    VAEDecode,
    VAEEncode,
    Upscale,
    LatentUpscale,
    KSamplerAdvanced,
    VAELoader,
    LoraLoader,
    LoraLoaderModelOnly,
    CLIPSetLastLayer,
    TextEncodeSDXL,
    TextEncodeSDXLRefiner,
    ControlNetLoader,
    ControlNetApply,
    ControlNetApplyAdvanced,
    LoadImage,
    VAEEncodeForInpaint,
    InpaintModelConditioning,
    SetLatentNoiseMask,
    UpscaleModelLoader,
    ImageUpscaleWithModel,
    ModelSamplingDiscrete,
]
