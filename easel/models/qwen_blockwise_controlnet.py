"""Qwen-Image's DiffSynth blockwise ControlNets (ComfyUI's `models/model_patches/
qwen_image_{canny,depth,inpaint}_diffsynth_controlnet.safetensors`), applied as ComfyUI's
QwenImageDiffsynthControlnet applies them.

Hand-written: diffusers has no class for this network (its QwenImageControlNetModel is
InstantX's, a different design), and it is small: `img_in` projects the control latent's 2x2
patches (16 latent channels, plus a mask channel for the inpainting variant: `img_in` takes
64 + 4 inputs) to the transformer's width, and one block per transformer block,
`controlnet_blocks.N` = RMSNorm the image tokens (`x_rms`) and the control tokens (`y_rms`),
add, Linear (`input_proj`), GELU, Linear (`output_proj`). After transformer block N its output
for the image's tokens is added, times the strength, to the image tokens (before any reference
latents' tokens), as ComfyUI's "double_block" patch does. The module's shapes are read off the
file; ComfyUI's RMSNorm eps (1e-6) and exact GELU are kept.

The control latent is the VAE's, normalised as the model's latents are (the Qwen VAE's
per-channel mean and std); the inpainting variant's mask channel is 1 where the image is kept
(1 - the MASK, resized bilinearly to the latent), all ones without a mask.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.errors import ModelError

PROBE = "controlnet_blocks.0.y_rms.weight"
LATENT_CHANNELS = 16
PATCH = 2


def is_qwen_blockwise(state: Mapping[str, Any]) -> bool:
    """Whether a model-patch file is a DiffSynth blockwise ControlNet for Qwen-Image."""
    return PROBE in state


@dataclass(frozen=True)
class BlockwiseConfig:
    num_layers: int
    in_dim: int  # 2x2 patches of the control latent (and mask): 64, or 68 for inpainting
    dim: int

    @property
    def mask_channels(self) -> int:
        return (self.in_dim - PATCH * PATCH * LATENT_CHANNELS) // (PATCH * PATCH)


def config_of(state: Mapping[str, Any]) -> BlockwiseConfig:
    weight = state["img_in.weight"]
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("controlnet_blocks.")}
    return BlockwiseConfig(max(blocks) + 1, int(weight.shape[1]), int(weight.shape[0]))


def _module_classes() -> tuple[Any, Any]:
    from torch import nn

    class BlockwiseControlBlock(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.x_rms = nn.RMSNorm(dim, eps=1e-6)
            self.y_rms = nn.RMSNorm(dim, eps=1e-6)
            self.input_proj = nn.Linear(dim, dim)
            self.act = nn.GELU()
            self.output_proj = nn.Linear(dim, dim)

        def forward(self, x: Any, y: Any) -> Any:
            return self.output_proj(self.act(self.input_proj(self.x_rms(x) + self.y_rms(y))))

    class QwenBlockwiseControlNet(nn.Module):
        def __init__(self, config: BlockwiseConfig) -> None:
            super().__init__()
            self.config = config
            self.img_in = nn.Linear(config.in_dim, config.dim)
            self.controlnet_blocks = nn.ModuleList(
                BlockwiseControlBlock(config.dim) for _ in range(config.num_layers)
            )

        def embed(self, latent: Any) -> Any:
            """Control tokens [B, tokens, dim] of a control latent [B, C, h, w]."""
            from easel.models.flux_denoiser import pack

            height, width = latent.shape[-2:]
            if height % PATCH or width % PATCH:  # whole patches, as ComfyUI pads them
                pad = (0, -width % PATCH, 0, -height % PATCH)
                latent = nn.functional.pad(latent, pad, mode="circular")
            return self.img_in(pack(latent, PATCH))

    return BlockwiseControlBlock, QwenBlockwiseControlNet


def load(state: Mapping[str, Any], dtype: Any) -> Any:
    """The blockwise ControlNet of a model-patch file's tensors."""
    from easel.models.state_dicts import load_into

    config = config_of(state)
    if config.in_dim < PATCH * PATCH * LATENT_CHANNELS or config.in_dim % (PATCH * PATCH):
        raise ModelError(
            f"this DiffSynth ControlNet's img_in takes {config.in_dim} inputs: expected 64 "
            "(2x2 patches of 16 latent channels) plus whole patches of mask channels"
        )
    _, network = _module_classes()
    return load_into(network, config, dict(state), dtype, "DiffSynth ControlNet")


def check_fits(controlnet: Any, transformer: Any, label: str) -> None:
    """ModelError when the ControlNet was made for another Qwen-Image model."""
    config = controlnet.config
    heads, head = transformer.config.num_attention_heads, transformer.config.attention_head_dim
    width = int(heads) * int(head)
    if config.dim != width:
        raise ModelError(
            f"{label} has width {config.dim}, the Qwen-Image model {width}: it was made for "
            "another model"
        )
    blocks = len(transformer.transformer_blocks)
    if config.num_layers < blocks:
        raise ModelError(
            f"{label} has {config.num_layers} blocks, the Qwen-Image model {blocks}: it was "
            "made for another model"
        )


def mask_channels(mask: Any, batch: int, height: int, width: int, channels: int) -> Any:
    """The inpainting variant's mask channels at latent size: 1 - mask (1 where the image is
    kept), bilinear, or all ones without a mask."""
    import torch

    if mask is None:
        return torch.ones(batch, channels, height, width)
    keep = 1.0 - mask.float().reshape(mask.shape[0], 1, *mask.shape[-2:])
    keep = torch.nn.functional.interpolate(keep, size=(height, width), mode="bilinear")
    return keep.expand(-1, channels, -1, -1)


class QwenBlockwiseControl:
    """One QwenImageDiffsynthControlnet on a Qwen-Image model: the ControlNet, its control
    latent per size (`latents(h, w)`, with the mask channels), and the strength."""

    def __init__(self, controlnet: Any, latents: Any, strength: float, manager: Any) -> None:
        self.controlnet, self.latents, self.strength = controlnet, latents, strength
        self.manager = manager

    def wrap(self, transformer: Any, call: Any) -> Any:
        return _ControlledCall(self, transformer, call)


class _ControlledCall:
    """The transformer's call with the control added after each block (forward hooks on its
    blocks for the duration of the call only: the shared module is left as it was)."""

    def __init__(self, control: QwenBlockwiseControl, transformer: Any, inner: Any) -> None:
        self.control, self.transformer, self.inner = control, transformer, inner

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "control", "transformer"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        control = self.control
        net = control.manager.place(control.controlnet) if control.manager else control.controlnet
        hidden = kwargs["hidden_states"]
        _, rows, cols = kwargs["img_shapes"][0][0]
        latent = control.latents(rows * PATCH, cols * PATCH)
        param = next(net.parameters())
        tokens = net.embed(latent.to(device=param.device, dtype=param.dtype))
        batch = hidden.shape[0]
        if tokens.shape[0] not in (1, batch):
            raise ModelError(
                f"the control image has a batch of {tokens.shape[0]}, the latent {batch}"
            )
        tokens = tokens.to(hidden.dtype).expand(batch, -1, -1)
        count = tokens.shape[1]
        strength = control.strength

        def hook(index: int) -> Any:
            block = net.controlnet_blocks[index]

            def add(_module: Any, _args: Any, output: Any) -> Any:
                text, image = output
                image = image.clone()
                image[:, :count] += block(image[:, :count], tokens) * strength
                return text, image

            return add

        handles = [
            layer.register_forward_hook(hook(index))
            for index, layer in enumerate(self.transformer.transformer_blocks)
        ]
        try:
            return self.inner(*args, **kwargs)
        finally:
            for handle in handles:
                handle.remove()
