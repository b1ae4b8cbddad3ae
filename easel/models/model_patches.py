"""ComfyUI's model patches (`models/model_patches/`, ModelPatchLoader): files that are not a
model of their own but add to one, recognised by their keys as ComfyUI recognises them.

Easel loads the two ControlNets ComfyUI applies with QwenImageDiffsynthControlnet:

- Z-Image's Fun ControlNet Union (alibaba-pai; `control_all_x_embedder.2-1.weight`):
  easel.models.zimage_controlnet, through diffusers' ZImageControlNetModel;
- Qwen-Image's DiffSynth blockwise ControlNets (canny, depth, inpaint;
  `controlnet_blocks.0.y_rms.weight`): easel.models.qwen_blockwise_controlnet.

Anima's ControlNet-LLLite patches load too (easel.models.anima_lllite; AnimaLLLiteApply).
Other model patches ComfyUI knows (USO's style projector, MultiTalk's audio layers) are named in
a clear error. A patch applied to a model is kept on its ModelHandle
(`model_patches`): `ModelHandle.forward()` wraps the transformer's call with each patch's
`wrap(transformer, call)`, so the shared transformer is never changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from easel.core.cache import sizeof
from easel.models.errors import ModelError

ZIMAGE_CONTROLNET = "zimage_fun_controlnet"
QWEN_BLOCKWISE = "qwen_diffsynth_controlnet"
ANIMA_LLLITE = "anima_lllite"  # easel.models.anima_lllite (AnimaLLLiteApply)
LABELS = {
    ZIMAGE_CONTROLNET: "a Z-Image Fun ControlNet",
    QWEN_BLOCKWISE: "a Qwen-Image DiffSynth ControlNet",
    ANIMA_LLLITE: "an Anima ControlNet-LLLite",
}
# The network (a family's `network`: its sampler adapter) each kind of patch is made for.
NETWORKS = {ZIMAGE_CONTROLNET: "z-image", QWEN_BLOCKWISE: "qwen_image", ANIMA_LLLITE: "anima"}
NETWORK_LABELS = {"z-image": "Z-Image", "qwen_image": "Qwen-Image", "anima": "Anima"}
# Model patches ComfyUI loads that Easel does not: a key each has, and what it is.
KNOWN_UNSUPPORTED = {
    "feature_embedder.mid_layer_norm.bias": "USO's style projector (USOStyleReference)",
    "audio_proj.proj1.weight": "MultiTalk's audio layers (Wan video)",
}


@dataclass(eq=False)
class ModelPatchHandle:
    """A loaded model patch: its kind (ZIMAGE_CONTROLNET, QWEN_BLOCKWISE) and module."""

    name: str
    kind: str
    module: Any
    manager: Any

    @property
    def label(self) -> str:
        return f"{LABELS[self.kind]} ({self.name})"


sizeof.register(ModelPatchHandle)(lambda value: 0)


def kind_of(state: Mapping[str, Any], name: str) -> str:
    """What kind of model patch a file is, by its keys; ModelError naming what was found."""
    from easel.models import qwen_blockwise_controlnet, zimage_controlnet

    if zimage_controlnet.is_zimage_controlnet(state):
        return ZIMAGE_CONTROLNET
    if qwen_blockwise_controlnet.is_qwen_blockwise(state):
        return QWEN_BLOCKWISE
    from easel.models.anima_lllite import is_anima_lllite

    if is_anima_lllite(state):
        return ANIMA_LLLITE
    for key, what in KNOWN_UNSUPPORTED.items():
        if key in state:
            raise ModelError(f"{name} is {what}: Easel does not load this model patch")
    if any(".lllite" in key or key.startswith("lllite") for key in state):
        raise ModelError(
            f"{name} is an LLLite control patch Easel does not read: AnimaLLLiteApply takes "
            "Anima's v2 files (lllite_conditioning1.*, lllite_dit_blocks_N_*)"
        )
    sample = ", ".join(sorted(state)[:3])
    raise ModelError(
        f"{name} is not a model patch Easel knows (keys such as {sample}): ModelPatchLoader "
        "loads Z-Image Fun ControlNets (control_all_x_embedder.2-1.weight) and Qwen-Image "
        "DiffSynth ControlNets (controlnet_blocks.0.y_rms.weight)"
    )


def load_model_patch(path: Path, dtype: Any, allow_pickle: bool = False) -> tuple[str, Any]:
    """(kind, module) of the model patch at `path`."""
    from easel.models import qwen_blockwise_controlnet, zimage_controlnet
    from easel.models.state_dicts import read_state_dict

    state = read_state_dict(path, allow_pickle)
    kind = kind_of(state, path.name)
    if kind == ANIMA_LLLITE:
        from easel.models import anima_lllite

        return kind, anima_lllite.load(state, dtype, path)
    loader = zimage_controlnet.load if kind == ZIMAGE_CONTROLNET else qwen_blockwise_controlnet.load
    return kind, loader(state, dtype)


def model_patch_handle(manager: Any, name: str, path: Path) -> ModelPatchHandle:
    """The model patch at `path`, loaded once by `manager` and shared."""

    def load() -> Any:
        kind, module = load_model_patch(path, manager.dtype, manager.allow_unsafe_pickle)
        module.easel_model_patch_kind = kind
        return module

    module = manager.load_module((str(path.resolve()), "model_patch"), load)
    return ModelPatchHandle(name, module.easel_model_patch_kind, module, manager)


# -- the control image --------------------------------------------------------------------
class ControlLatents:
    """The control image's latent at each latent size the sampler asks for, encoded once per
    size: the image cropped to the latent's aspect and resized ("area", centre crop, as
    ComfyUI's patches rescale it) when it is not already the latent's size times the VAE's
    factor, then encoded and scaled as VAEEncode scales latents. `extra(latent)` may add
    channels (the inpainting variants' masks)."""

    def __init__(self, vae: Any, image: Any, extra: Callable[[Any], Any] | None = None) -> None:
        self.vae, self.image, self.extra = vae, image, extra
        self.cache: dict[tuple[int, int], Any] = {}

    def __call__(self, height: int, width: int) -> Any:
        if (height, width) not in self.cache:
            self.cache.clear()  # one size at a time: a sampler keeps its latent's size
            pixels = resized(self.image, height * self.factor, width * self.factor)
            latent = encode(self.vae, pixels)
            if self.extra is not None:
                latent = self.extra(latent)
            self.cache[(height, width)] = latent
        return self.cache[(height, width)]

    @property
    def factor(self) -> int:
        return int(self.vae.scale_factor)


def resized(image: Any, height: int, width: int) -> Any:
    """`image` [B, 3, H, W] at height x width: centre-cropped to that aspect, then "area"
    resized (ComfyUI's common_upscale(..., "area", "center")); as it is when it fits."""
    import torch

    old_h, old_w = image.shape[-2:]
    if (old_h, old_w) == (height, width):
        return image
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    cropped = image[..., y : old_h - y, x : old_w - x]
    return torch.nn.functional.interpolate(cropped, size=(height, width), mode="area")


def encode(vae: Any, image: Any) -> Any:
    """The VAE's latent of a [0, 1] image [B, 3, H, W], scaled as VAEEncode scales it (the
    model's latent space: Flux's scale and shift, or the Qwen VAE's per-channel ones)."""
    import torch

    module = vae.manager.place(vae.vae)
    param = next(module.parameters())
    with torch.inference_mode():
        encoded = module.encode((image * 2 - 1).to(param.device, param.dtype))
        dist = getattr(encoded, "latent_dist", None)
        latents = dist.mode() if dist is not None else encoded.latents
    return ((latents.float() - vae.shift_factor) * vae.scaling_factor).cpu()


def apply(
    model: Any, patch: ModelPatchHandle, vae: Any, image: Any, strength: float, mask: Any = None
) -> Any:
    """A ModelHandle on the same transformer with `patch` applied (QwenImageDiffsynthControlnet);
    ModelError when the patch does not fit the model."""
    from easel.models import qwen_blockwise_controlnet, zimage_controlnet

    if patch.kind == ANIMA_LLLITE:
        raise ModelError(f"{patch.label} is applied with AnimaLLLiteApply")
    family = getattr(model, "family", None)
    wanted = NETWORKS[patch.kind]
    if getattr(family, "network", None) != wanted:
        label = getattr(family, "label", None) or "Stable Diffusion"
        raise ModelError(
            f"{patch.label} is made for {NETWORK_LABELS[wanted]} models, not {label} models"
        )
    image = image[:, :3].float()
    if patch.kind == ZIMAGE_CONTROLNET:
        zimage_controlnet.check_fits(patch.module, model.unet, patch.label)
        latents = ControlLatents(vae, image)
        control: Any = zimage_controlnet.ZImageControl(
            patch.module, latents, strength, patch.manager
        )
    else:
        qwen_blockwise_controlnet.check_fits(patch.module, model.unet, patch.label)
        channels = patch.module.config.mask_channels
        extra = None
        if channels:
            import torch

            def extra(latent: Any) -> Any:
                planes = qwen_blockwise_controlnet.mask_channels(
                    mask, latent.shape[0], latent.shape[-2], latent.shape[-1], channels
                )
                if planes.shape[0] != latent.shape[0]:
                    planes = planes.expand(latent.shape[0], -1, -1, -1)
                return torch.cat([latent, planes.to(latent.dtype)], dim=1)

        latents = ControlLatents(vae, image, extra)
        control = qwen_blockwise_controlnet.QwenBlockwiseControl(
            patch.module, latents, strength, patch.manager
        )
    return model.with_model_patch(control)
