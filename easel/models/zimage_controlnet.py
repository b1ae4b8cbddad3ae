"""Z-Image's "Fun ControlNet Union" (alibaba-pai), a ComfyUI model patch, through diffusers'
ZImageControlNetModel, applied as ZImageControlNetPipeline applies it.

The file (ComfyUI's `models/model_patches/Z-Image-Turbo-Fun-Controlnet-Union.safetensors`)
holds diffusers' own key names: `control_all_x_embedder.2-1` (the control latent's 2x2
patches), `control_layers.N` (control transformer blocks with `before_proj` on the first and
`after_proj` on each) and `control_noise_refiner.N`. ComfyUI fuses q/k/v when it loads the
file; a file saved that way (`attention.qkv`, `attention.out`, `q_norm`, `k_norm`) is split
back here. The config is read off the shapes:

- the width from the embedder, the heads from the q-norm's width (the head size);
- version 1 (`control_noise_refiner` blocks without projections, 16 control channels): the
  refiner runs on the control tokens alone; version 2 (refiner blocks with projections,
  33 control channels: the control latent, an inpainting latent and its mask): the refiner
  blocks add hints too ("control_noise_refiner" in diffusers' terms); a file without refiner
  blocks runs them through the control layers ("control_layers").

The transformer layer each control block feeds is one every `n_layers / control blocks`
(ComfyUI's 6 of 30 layers: 0, 5, ..., 25; version 2's 15 of 30: 0, 2, ..., 28), known only
once the transformer is; the ControlNet is built with places 0..n-1 and its hints are moved to
the transformer's layers at call time. The control latent is the VAE's (scaled as the model's
latents are), padded with zeros to the control channels as ZImageControlNetPipeline pads it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from easel.models.errors import ModelError

PROBE = "control_all_x_embedder.2-1.weight"
_FUSED = re.compile(r"^(.*)\.attention\.qkv\.weight$")
_RENAMES = (
    (".attention.out.", ".attention.to_out.0."),
    (".attention.q_norm.", ".attention.norm_q."),
    (".attention.k_norm.", ".attention.norm_k."),
)


def is_zimage_controlnet(state: Mapping[str, Any]) -> bool:
    """Whether a model-patch file is Z-Image's Fun ControlNet (either key layout)."""
    return PROBE in state


def to_diffusers(state: Mapping[str, Any]) -> dict[str, Any]:
    """The file's tensors under ZImageControlNetModel's names (fused q/k/v split, ComfyUI's
    names renamed); a file already in diffusers' names is returned as it is."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        fused = _FUSED.match(key)
        if fused:
            q, k, v = value.chunk(3, dim=0)
            stem = fused.group(1)
            for name, part in (("to_q", q), ("to_k", k), ("to_v", v)):
                out[f"{stem}.attention.{name}.weight"] = part
            continue
        for old, new in _RENAMES:
            key = key.replace(old, new)
        out[key] = value
    return out


def _count(state: Mapping[str, Any], prefix: str) -> int:
    found = {int(k[len(prefix) :].split(".", 1)[0]) for k in state if k.startswith(prefix)}
    return max(found) + 1 if found else 0


def config_of(state: Mapping[str, Any]) -> dict[str, Any]:
    """ZImageControlNetModel's config for a state dict in diffusers' names."""
    embedder = state[PROBE]
    dim, patch_in = int(embedder.shape[0]), int(embedder.shape[1])
    norm = state.get("control_layers.0.attention.norm_q.weight")
    if norm is None:
        raise ModelError("this Z-Image ControlNet has no control_layers.0 attention q-norm")
    heads = dim // int(norm.shape[0])
    n_control = _count(state, "control_layers.")
    n_refiner = _count(state, "control_noise_refiner.")
    if not n_refiner:
        mode: str | None = "control_layers"
    elif "control_noise_refiner.0.after_proj.weight" in state:
        mode = "control_noise_refiner"
    else:
        mode = None
    return {
        "control_layers_places": list(range(n_control)),
        "control_refiner_layers_places": list(range(n_refiner or n_control)),
        "control_in_dim": patch_in // 4,
        "add_control_noise_refiner": mode,
        "dim": dim,
        "n_refiner_layers": n_refiner or 2,
        "n_heads": heads,
        "n_kv_heads": heads,
    }


def load(state: Mapping[str, Any], dtype: Any) -> Any:
    """A ZImageControlNetModel from a model-patch file's tensors."""
    from diffusers import ZImageControlNetModel

    from easel.models.state_dicts import load_into

    weights = to_diffusers(state)
    config = config_of(weights)
    if config["add_control_noise_refiner"] == "control_layers":
        weights = {k: v for k, v in weights.items() if not k.startswith("control_noise_refiner.")}
    return load_into(ZImageControlNetModel, config, weights, dtype, "Z-Image ControlNet")


def layer_places(n_layers: int, n_control: int) -> list[int]:
    """The transformer layers the control blocks feed: one every n_layers / n_control."""
    stride = max(1, n_layers // n_control)
    return [i * stride for i in range(n_control)]


def check_fits(controlnet: Any, transformer: Any, label: str) -> None:
    """ModelError when the ControlNet was made for another Z-Image model."""
    dim = int(controlnet.config.dim)
    if dim != int(transformer.config.dim):
        raise ModelError(
            f"{label} has width {dim}, the Z-Image model {transformer.config.dim}: it was made "
            "for another model"
        )
    places = layer_places(int(transformer.config.n_layers), len(controlnet.control_layers))
    if places[-1] >= int(transformer.config.n_layers):
        raise ModelError(
            f"{label} has {len(places)} control blocks, more than the model's "
            f"{transformer.config.n_layers} layers"
        )


class ZImageControl:
    """One QwenImageDiffsynthControlnet on a Z-Image model: the ControlNet, its control image
    encoded per latent size, and the strength."""

    def __init__(self, controlnet: Any, latents: Any, strength: float, manager: Any) -> None:
        self.controlnet, self.latents, self.strength = controlnet, latents, strength
        self.manager = manager

    def wrap(self, transformer: Any, call: Any) -> Any:
        return _ControlledCall(self, transformer, call)


_SHARED = (
    "t_scale",
    "t_embedder",
    "all_x_embedder",
    "cap_embedder",
    "rope_embedder",
    "noise_refiner",
    "context_refiner",
    "x_pad_token",
    "cap_pad_token",
)


class _ControlledCall:
    """The transformer's call with the ControlNet's hints added (ZImageControlNetPipeline's
    step: controlnet(...) then transformer(..., controlnet_block_samples=...)); other
    attributes are the inner call's."""

    def __init__(self, control: ZImageControl, transformer: Any, inner: Any) -> None:
        self.control, self.transformer, self.inner = control, transformer, inner

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "control", "transformer"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, x: list[Any], t: Any, captions: list[Any], **kwargs: Any) -> Any:
        from contextlib import nullcontext

        from easel.models import lora

        inner = self.inner
        scope: Any = nullcontext()
        if isinstance(inner, lora.PatchedModule):  # LoRA reaches the shared refiner layers too
            scope = lora.patched(inner.module, inner.component, inner.patches)
            inner = inner.module
        incoming = kwargs.pop("controlnet_block_samples", None) or {}
        with scope:
            samples = self.hints(x, t, captions)
            for layer, hint in incoming.items():  # another ControlNet's, chained before this
                samples[layer] = samples[layer] + hint if layer in samples else hint
            return inner(x, t, captions, controlnet_block_samples=samples, **kwargs)

    def hints(self, x: list[Any], t: Any, captions: list[Any]) -> dict[int, Any]:
        control = self.control
        net = control.manager.place(control.controlnet) if control.manager else control.controlnet
        height, width = x[0].shape[-2:]
        latent = control.latents(height, width).to(device=x[0].device, dtype=x[0].dtype)
        extra = int(net.config.control_in_dim) - latent.shape[1]
        if extra > 0:  # version 2's inpainting channels, zero as the pipeline leaves them
            latent = _pad_channels(latent, extra)
        contexts = [latent[i if latent.shape[0] > 1 else 0].unsqueeze(1) for i in range(len(x))]
        transformer = self.transformer
        for name in _SHARED:
            setattr(net, name, getattr(transformer, name))
        try:
            samples = net(x, t, captions, contexts, conditioning_scale=control.strength)
        finally:
            for name in _SHARED:
                setattr(net, name, None)
        places = layer_places(int(transformer.config.n_layers), len(net.control_layers))
        return {places[index]: samples[index] for index in range(len(places))}


def _pad_channels(latent: Any, extra: int) -> Any:
    import torch

    zeros = latent.new_zeros(latent.shape[0], extra, *latent.shape[2:])
    return torch.cat([latent, zeros], dim=1)
