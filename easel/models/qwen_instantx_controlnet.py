"""InstantX's Qwen-Image ControlNets (ComfyUI's ControlNetLoader files
`Qwen-Image-InstantX-ControlNet-*.safetensors`): diffusers' QwenImageControlNetModel, whose
file holds diffusers' own keys (`controlnet_x_embedder`, `transformer_blocks.*`,
`controlnet_blocks.*`), the config read off the shapes. The inpainting one takes the mask as
one more latent channel (`controlnet_x_embedder` 4 x (16 + 1) wide).

A `QwenControl` is one such ControlNet on a conditioning ("control" list): the hint image
(masked already by ControlNetInpaintingAliMamaApply), the mask to concatenate (1 where the
image is kept) and the VAE that encodes the hint. At each step the network adapter
(easel.models.qwen_image_denoiser) asks every control for its per-block residuals, summed, as
diffusers' QwenImageControlNetPipeline / QwenImageControlNetInpaintPipeline pass them to the
transformer. The hint is prepared as ComfyUI prepares it: resized (nearest-exact, centre crop)
to the latent's pixels, VAE-encoded (the normalised Qwen latent), the mask resized
(nearest-exact) to the latent and concatenated, packed in 2x2 patches. Each side of the
guidance runs the ControlNet with its own text, as ComfyUI does (diffusers' pipelines reuse the
positive side's residuals for the negative).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easel.core.cache import sizeof
from easel.models.errors import ModelError
from easel.models.transformer_files import fitted

HEAD_DIM = 128
PATCH = 2
LATENT_CHANNELS = 16


def is_qwen_instantx(state: Mapping[str, Any]) -> bool:
    """Whether a ControlNet file is an InstantX Qwen-Image ControlNet (diffusers' keys)."""
    return (
        "controlnet_x_embedder.weight" in state
        and "txt_norm.weight" in state
        and "transformer_blocks.0.img_mod.1.weight" in state
    )


def controlnet_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """QwenImageControlNetModel's config read off the shapes."""
    img_in = tuple(state["img_in.weight"].shape)
    hidden, in_channels = int(img_in[0]), int(img_in[1])
    embedder = int(state["controlnet_x_embedder.weight"].shape[1])
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")}
    if hidden % HEAD_DIM:
        raise ModelError(f"width {hidden}: Qwen-Image ControlNets have heads of {HEAD_DIM}")
    return {
        "patch_size": PATCH,
        "in_channels": in_channels,
        "out_channels": LATENT_CHANNELS,
        "num_layers": max(blocks) + 1,
        "attention_head_dim": HEAD_DIM,
        "num_attention_heads": hidden // HEAD_DIM,
        "joint_attention_dim": int(state["txt_in.weight"].shape[1]),
        "axes_dims_rope": (16, 56, 56),
        "extra_condition_channels": embedder - in_channels,
    }


def load_qwen_controlnet(path: Path, state: Mapping[str, Any], dtype: Any) -> Any:
    """QwenImageControlNetModel from an InstantX file."""
    from diffusers import QwenImageControlNetModel

    from easel.models.qwen_loading import build_module

    def build() -> Any:
        return build_module(
            QwenImageControlNetModel,
            controlnet_config(state),
            state,
            dtype,
            "Qwen-Image ControlNet",
        )

    return fitted(path, "an InstantX Qwen-Image ControlNet", build)


def is_qwen_net(handle: Any) -> bool:
    """Whether a ControlNetHandle holds a Qwen-Image ControlNet."""
    return type(getattr(handle, "model", None)).__name__ == "QwenImageControlNetModel"


def takes_mask(handle: Any) -> bool:
    """Whether the ControlNet is an inpainting one (the mask as one more latent channel)."""
    return int(handle.model.config.extra_condition_channels) == PATCH * PATCH


@dataclass(eq=False)
class QwenControl:
    """One Qwen-Image ControlNet of a conditioning's chain: `image` [B, 3, H, W] in 0..1 (the
    masked image for inpainting), `keep` [B, 1, H, W] (1 where the image is kept) for an
    inpainting ControlNet, the VAE that encodes the hint, strength and percent range."""

    net: Any  # easel.models.controlnet.ControlNetHandle
    image: Any
    vae: Any
    keep: Any = None
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    _prepared: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    def hint(self, batch: int, height: int, width: int, device: Any, dtype: Any) -> Any:
        """The packed hint tokens for a latent of `height` x `width` (prepared once per size)."""
        import torch

        from easel.models.controlnet import broadcast_batch, prepare_hint
        from easel.models.flux_denoiser import pack

        key = (batch, height, width, str(device), str(dtype))
        if key not in self._prepared:
            factor = int(self.vae.scale_factor)
            pixels = prepare_hint(self.image, height * factor, width * factor, 3)
            latent = _encode(self.vae, pixels)
            if latent.dim() == 5:
                latent = latent[:, :, 0]
            parts = [latent]
            if takes_mask(self.net):
                if self.keep is None:
                    raise ValueError(
                        f"ControlNet {self.net.name!r} is an inpainting ControlNet: apply it "
                        "with ControlNetInpaintingAliMamaApply (it needs the mask)"
                    )
                keep = prepare_hint(self.keep.float(), height, width, 1)
                parts.append(broadcast_batch(keep, latent.shape[0]))
            hint = torch.cat(parts, dim=1)
            hint = pack(broadcast_batch(hint, batch).to(device=device, dtype=dtype), PATCH)
            self._prepared.clear()
            self._prepared[key] = hint
        return self._prepared[key]

    def residuals(
        self,
        tokens: Any,
        t: Any,
        embeds: Any,
        mask: Any,
        shapes: list[Any],
        size: tuple[int, int],
    ) -> list[Any]:
        """The ControlNet's per-block residuals (times the strength) for the image tokens."""
        net = (
            self.net.manager.place(self.net.model)
            if self.net.manager is not None
            else self.net.model
        )
        config = net.config
        if embeds.shape[-1] != config.joint_attention_dim:
            raise ValueError(
                f"ControlNet {self.net.name!r} expects text embeddings of width "
                f"{config.joint_attention_dim} but the conditioning has {embeds.shape[-1]}: "
                "it is a ControlNet for another model"
            )
        param = next(net.parameters())
        device, dtype = param.device, param.dtype
        hint = self.hint(tokens.shape[0], size[0], size[1], device, dtype)
        samples = net(
            hidden_states=tokens.to(device=device, dtype=dtype),
            controlnet_cond=hint,
            conditioning_scale=float(self.strength),
            timestep=t.expand(tokens.shape[0]).to(dtype) / 1000,
            encoder_hidden_states=embeds.to(device=device, dtype=dtype),
            encoder_hidden_states_mask=None if mask is None else mask.to(device),
            img_shapes=shapes,
            return_dict=False,
        )
        return [s.to(tokens.dtype) for s in samples]


def _encode(vae: Any, image: Any) -> Any:
    """The normalised latent of an RGB image in [0, 1] (the posterior's mode)."""
    import torch

    module = vae.manager.place(vae.vae) if vae.manager is not None else vae.vae
    param = next(module.parameters())
    with torch.inference_mode():
        latents = module.encode((image * 2 - 1).to(param.device, param.dtype)).latent_dist.mode()
    return ((latents.float() - vae.shift_factor) * vae.scaling_factor).cpu()


def block_residuals(
    controls: list[Any],
    tokens: Any,
    t: Any,
    embeds: Any,
    mask: Any,
    shapes: list[Any],
    size: tuple[int, int],
) -> list[Any] | None:
    """The summed residuals of a conditioning's Qwen ControlNets, or None without any. A
    ControlNet of another kind, or a partial percent range, is a ValueError."""
    total: list[Any] | None = None
    for control in controls:
        if not isinstance(control, QwenControl):
            raise ValueError(
                f"ControlNet {getattr(control.net, 'name', '?')!r} is not a Qwen-Image "
                "ControlNet (Easel applies InstantX Qwen-Image ControlNets to Qwen-Image)"
            )
        if control.start > 0.0 or control.end < 1.0:
            raise ValueError(
                "Qwen-Image ControlNets act over the whole schedule in Easel: set "
                "start_percent 0 and end_percent 1"
            )
        samples = control.residuals(tokens, t, embeds, mask, shapes, size)
        if total is None:
            total = samples
        else:
            if len(samples) != len(total):
                raise ValueError(
                    f"ControlNet {control.net.name!r} has {len(samples)} blocks where the "
                    f"chain's others have {len(total)}"
                )
            total = [a + b for a, b in zip(total, samples, strict=True)]
    return total


sizeof.register(QwenControl)(lambda value: sizeof(value.image))
