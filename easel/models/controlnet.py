"""ControlNets: loading them (diffusers folders, and single files in the original or diffusers
key layout with nothing beside them) and the residuals a conditioning's ControlNet chain adds to
the UNet at each sampler step (`control_residuals`, called by easel.models.sampling).

Percent ranges follow ComfyUI, which measures them on the noise schedule, not in steps: a
control with (start, end) is active while the step's timestep t lies in
[(1 - end) * 999, (1 - start) * 999] (ComfyUI compares the sigmas of those timesteps; sigma
grows with t, so the two tests agree); start <= 0 and end >= 1 are unbounded. diffusers'
pipelines count step fractions instead (`control_guidance_start/end`): the two agree for 0..1,
and whenever the schedule's timesteps are evenly spaced (4 "leading" steps split at 0.5).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from easel.core.cache import sizeof
from easel.models.errors import ModelError

log = logging.getLogger(__name__)

LDM_PREFIX = "control_model."
TRAIN_TIMESTEPS = 1000  # ComfyUI's discrete model sampling: percent p is timestep (1 - p) * 999
# Rules no tensor shows, as Stable Diffusion has them (and ComfyUI's model detection and
# diffusers' LDM config conversion apply them): SD 1.x attention has 8 heads at every level,
# SD 2.x and XL (linear proj_in) heads of 64 channels; GroupNorm of 32; XL's time ids are
# embedded 256 wide.
SD1_HEADS = 8
HEAD_CHANNELS = 64
NORM_GROUPS = 32
TIME_ID_WIDTH = 256
# ComfyUI turns on global average pooling for the "shuffle" ControlNet by its file name.
SHUFFLE_SUFFIXES = ("_shuffle", "_shuffle_fp16")
HINTS_KEPT = 2  # prepared hints per control: both sides stacked (batch 2B) and apart (B)


@dataclass(eq=False)
class ControlNetHandle:
    """A loaded diffusers ControlNetModel, owned (and shared) by the model manager."""

    name: str
    model: Any
    manager: Any
    path: Path | None = None

    @property
    def hint_factor(self) -> int:
        """How much the hint encoder shrinks the hint image (8 for every real ControlNet): the
        hint is prepared at the latent's size times this."""
        channels = self.model.config.conditioning_embedding_out_channels
        return int(2 ** (len(channels) - 1))


@dataclass(eq=False)
class Control:
    """One ControlNet of a conditioning's chain ("control" list): the hint image (IMAGE,
    [B, C, H, W] in 0..1), its strength and the percent range of the schedule it acts in."""

    net: ControlNetHandle
    hint: Any
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    _prepared: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    def active(self, timestep: Any) -> bool:
        """Whether the control acts at `timestep` (see the module doc for the percent rule)."""
        t = _scalar(timestep)
        last = TRAIN_TIMESTEPS - 1
        high = math.inf if self.start <= 0.0 else (1.0 - self.start) * last
        low = -math.inf if self.end >= 1.0 else (1.0 - self.end) * last
        return low <= t <= high

    def hint_for(self, batch: int, height: int, width: int, device: Any, dtype: Any) -> Any:
        """The hint for a latent of `height` x `width`, prepared once (per size and batch)."""
        key = (batch, height, width, str(device), str(dtype))
        if key not in self._prepared:
            factor = self.net.hint_factor
            hint = prepare_hint(
                self.hint,
                height * factor,
                width * factor,
                int(self.net.model.config.conditioning_channels),
            )
            hint = broadcast_batch(hint, batch)
            while len(self._prepared) >= HINTS_KEPT:  # the oldest size goes first
                del self._prepared[next(iter(self._prepared))]
            self._prepared[key] = hint.to(device=device, dtype=dtype)
        return self._prepared[key]

    def residuals(
        self,
        x: Any,
        t: Any,
        encoder_hidden_states: Any,
        added_cond_kwargs: Mapping[str, Any] | None,
    ) -> tuple[list[Any], Any]:
        """The ControlNet's down-block residuals and mid-block residual, times `strength`."""
        net = (
            self.net.manager.place(self.net.model)
            if self.net.manager is not None
            else self.net.model
        )
        config = net.config
        param = next(net.parameters())
        device, dtype = param.device, param.dtype
        if encoder_hidden_states is None:
            raise ValueError(f"ControlNet {self.net.name!r} needs text conditioning")
        width = encoder_hidden_states.shape[-1]
        if width != config.cross_attention_dim:
            raise ValueError(
                f"ControlNet {self.net.name!r} expects text embeddings of width "
                f"{config.cross_attention_dim} but the conditioning has {width}: "
                "it is a ControlNet for another model family"
            )
        added = None
        if config.addition_embed_type == "text_time":
            if not added_cond_kwargs or "text_embeds" not in added_cond_kwargs:
                raise ValueError(
                    f"ControlNet {self.net.name!r} is an SDXL ControlNet: use it with an SDXL model"
                )
            added = {k: v.to(device=device, dtype=dtype) for k, v in added_cond_kwargs.items()}
        # An inpainting UNet's input is [noisy latent, mask, masked image]: a ControlNet sees
        # the noisy latent (as diffusers' ControlNet inpaint pipelines do).
        sample = x[:, : config.in_channels]
        hint = self.hint_for(x.shape[0], x.shape[2], x.shape[3], device, dtype)
        down, mid = net(
            sample.to(device=device, dtype=dtype),
            t,
            encoder_hidden_states=encoder_hidden_states.to(device=device, dtype=dtype),
            controlnet_cond=hint,
            conditioning_scale=float(self.strength),
            added_cond_kwargs=added,
            return_dict=False,
        )
        return [d.to(x.dtype) for d in down], mid.to(x.dtype)


def _scalar(timestep: Any) -> float:
    if hasattr(timestep, "flatten"):
        return float(timestep.flatten()[0])
    return float(timestep)


def control_residuals(
    controls: Sequence[Control],
    x: Any,
    t: Any,
    encoder_hidden_states: Any,
    added_cond_kwargs: Mapping[str, Any] | None,
    step_index: int,
    total_steps: int,
) -> dict[str, Any]:
    """UNet keyword arguments adding the residuals of every control active at timestep `t`
    (summed over the chain, each scaled by its strength), or {} when none is active.
    `step_index`/`total_steps` are not used: ranges are measured on the schedule (module doc).
    A ValueError names the ControlNet when it does not fit the model."""
    down: list[Any] | None = None
    mid: Any = None
    for control in controls:
        if not control.active(t):
            continue
        d, m = control.residuals(x, t, encoder_hidden_states, added_cond_kwargs)
        if down is None:
            down, mid = d, m
        else:
            if len(d) != len(down):
                raise ValueError(
                    f"ControlNet {control.net.name!r} gives {len(d)} residuals "
                    f"where the chain's others give {len(down)}"
                )
            down = [a + b for a, b in zip(down, d, strict=True)]
            mid = mid + m
    if down is None:
        return {}
    return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}


def control_for_uncond(positive: Mapping[str, Any], negative: Mapping[str, Any]) -> Any:
    """The ControlNet chain of the negative side: its own, else the positive's when a
    ControlNetApply put it there (ComfyUI gives such a chain to an uncond without one)."""
    if negative.get("control"):
        return negative["control"]
    if positive.get("control_apply_to_uncond"):
        return positive.get("control")
    return None


# -- hint images ---------------------------------------------------------------------------
def prepare_hint(image: Any, height: int, width: int, channels: int) -> Any:
    """`image` ([B, C, H, W], 0..1) centre-cropped to the aspect of `width` x `height` and
    resized there with nearest-exact, as ComfyUI prepares a ControlNet hint."""
    import torch.nn.functional as F

    if image.ndim != 4:
        raise ValueError(
            f"a ControlNet hint is an IMAGE [B, C, H, W], got shape {tuple(image.shape)}"
        )
    c = image.shape[1]
    if c != channels:
        if c == 1:
            image = image.expand(-1, channels, -1, -1)
        elif c > channels:
            image = image[:, :channels]  # an RGBA image's alpha
        else:
            raise ValueError(
                f"the ControlNet takes {channels}-channel hints but the image has {c} channels"
            )
    old_h, old_w = image.shape[2], image.shape[3]
    if (old_h, old_w) == (height, width):
        return image.float()
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    cropped = image[:, :, y : old_h - y, x : old_w - x]
    return F.interpolate(cropped.float(), size=(height, width), mode="nearest-exact")


def broadcast_batch(hint: Any, batch: int) -> Any:
    """`hint` repeated over a batch of `batch` (the sampler may stack both guidance sides)."""
    import torch

    n = hint.shape[0]
    if n == batch:
        return hint
    if n == 1:
        return hint.expand(batch, *hint.shape[1:])
    return hint[torch.arange(batch) % n]


# -- loading ---------------------------------------------------------------------------------
def _indices(state: Mapping[str, Any], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for key in state if (m := regex.match(key))})


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    value = state.get(key)
    return tuple(value.shape) if value is not None else None


def diffusers_state_dict(state: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A ControlNet's tensors under diffusers' ControlNetModel keys, from the original layout
    (`control_model.`-prefixed or bare `input_blocks`, `input_hint_block`, `zero_convs`,
    `middle_block_out`) or the diffusers one. Key renaming is diffusers'
    `convert_controlnet_checkpoint`; see the two gaps it has, filled below."""
    from diffusers.loaders.single_file_utils import (
        DIFFUSERS_TO_LDM_MAPPING,
        convert_controlnet_checkpoint,
    )

    if "lora_controlnet" in state:
        raise ModelError(f"{what} is a Control-LoRA; Easel loads complete ControlNets only")
    if any(k.startswith(LDM_PREFIX) for k in state):
        state = {k[len(LDM_PREFIX) :]: v for k, v in state.items() if k.startswith(LDM_PREFIX)}
    if "controlnet_cond_embedding.conv_in.weight" in state:
        return dict(state)
    if "zero_convs.0.0.weight" not in state or "input_hint_block.0.weight" not in state:
        raise ModelError(
            f"{what} is not a ControlNet: it has no input_hint_block / zero_convs "
            "(control_model.) or controlnet_cond_embedding tensors (T2I-Adapters, "
            "ControlNet-LLLite and Control-LoRA files are not supported)"
        )
    if "difference" in state:
        raise ModelError(
            f"{what} is a difference ControlNet (stored relative to one base "
            "model); Easel loads complete ControlNets only"
        )
    state = dict(state)
    # Gap 1: the converter places the hint encoder's last conv at input_hint_block.14 (the
    # 8-conv encoder of every released ControlNet); move a shorter encoder's last conv there.
    convs = _indices(state, r"input_hint_block\.(\d+)\.weight")
    if convs[-1] > 14:
        raise ModelError(
            f"{what}: a hint encoder of {len(convs)} convolutions is not a "
            "Stable Diffusion ControlNet's"
        )
    if convs[-1] != 14:
        for suffix in ("weight", "bias"):
            state[f"input_hint_block.14.{suffix}"] = state.pop(
                f"input_hint_block.{convs[-1]}.{suffix}"
            )
    blocks = _indices(state, r"input_blocks\.(\d+)\.")
    downsamplers = [i for i in blocks if f"input_blocks.{i}.0.op.weight" in state]
    layers = downsamplers[0] - 1 if downsamplers else len(blocks) - 1
    converted = convert_controlnet_checkpoint(state, {"layers_per_block": layers})
    # Gap 2: the converter drops SDXL's label_emb (the added time-id/pooled embedding).
    if "label_emb.0.0.weight" in state:
        tables = cast(dict[str, dict[str, dict[str, str]]], DIFFUSERS_TO_LDM_MAPPING)
        for new, old in tables["controlnet"]["addition_embed_type"].items():
            converted[new] = state[old]
    missing = sorted(k for k, v in converted.items() if v is None)
    if missing:
        raise ModelError(f"{what} is an incomplete ControlNet: no tensors for {missing[:3]}")
    return converted


def controlnet_config(
    state: Mapping[str, Any], what: str, global_pool: bool = False
) -> dict[str, Any]:
    """A ControlNetModel config read off the shapes of a diffusers-keyed state dict.

    diffusers' own single-file path cannot do this offline: it fetches a Hub config by model
    type, or needs the original yaml, and it tells SDXL only by diffusers keys. The rules
    that no shape shows are Stable Diffusion's (module constants)."""
    conv_in = _shape(state, "conv_in.weight")
    hint_in = _shape(state, "controlnet_cond_embedding.conv_in.weight")
    if conv_in is None or hint_in is None:
        raise ModelError(f"{what} has no conv_in / hint encoder: not a ControlNet")
    levels = _indices(state, r"down_blocks\.(\d+)\.")
    channels, kinds, depth = [], [], []
    for level in levels:
        out = _shape(state, f"down_blocks.{level}.resnets.0.conv2.weight")
        if out is None:
            raise ModelError(f"{what}: down block {level} has no ResNet")
        channels.append(out[0])
        here = _indices(state, rf"down_blocks\.{level}\.attentions\.0\.transformer_blocks\.(\d+)\.")
        kinds.append("CrossAttnDownBlock2D" if here else "DownBlock2D")
        depth.append(len(here) or 1)
    mid_depth = len(_indices(state, r"mid_block\.attentions\.0\.transformer_blocks\.(\d+)\."))
    if mid_depth:
        mid_type: str | None = "UNetMidBlock2DCrossAttn"
        # diffusers gives the mid block the last level's depth
        if kinds[-1] == "DownBlock2D":
            depth[-1] = mid_depth
        elif depth[-1] != mid_depth:
            raise ModelError(
                f"{what}: a mid block of depth {mid_depth} after a level of "
                f"depth {depth[-1]} has no diffusers ControlNetModel"
            )
    elif "mid_block.resnets.0.conv1.weight" in state:
        mid_type = "UNetMidBlock2D"
    else:
        mid_type = None
    proj_in = next((v for k, v in state.items() if k.endswith(".proj_in.weight")), None)
    linear = proj_in is not None and proj_in.ndim == 2
    to_k = next((v for k, v in state.items() if k.endswith("attn2.to_k.weight")), None)
    attention = [c for c, kind in zip(channels, kinds, strict=True) if kind != "DownBlock2D"]
    heads: int | list[int]
    if linear:
        bad = [c for c in attention if c % HEAD_CHANNELS]
        heads = [max(c // HEAD_CHANNELS, 1) for c in channels]
    else:
        bad = [c for c in attention if c % SD1_HEADS]
        heads = SD1_HEADS
    if bad:
        raise ModelError(
            f"{what}: attention widths {bad} do not split into Stable Diffusion's "
            "heads (8 heads for 1.x, 64-channel heads for 2.x and XL)"
        )
    hint_blocks = _indices(state, r"controlnet_cond_embedding\.blocks\.(\d+)\.weight")
    hint_channels = [hint_in[0]]
    for i in hint_blocks[1::2]:
        hint_channels.append(state[f"controlnet_cond_embedding.blocks.{i}.weight"].shape[0])
    layers = len(_indices(state, r"down_blocks\.0\.resnets\.(\d+)\."))
    config: dict[str, Any] = {
        "in_channels": conv_in[1],
        "conditioning_channels": hint_in[1],
        "conditioning_embedding_out_channels": hint_channels,
        "block_out_channels": channels,
        "layers_per_block": layers,
        "down_block_types": kinds,
        "mid_block_type": mid_type,
        "transformer_layers_per_block": depth if len(set(depth)) > 1 else depth[0],
        "attention_head_dim": heads,
        "use_linear_projection": linear,
        "norm_num_groups": NORM_GROUPS,
        "global_pool_conditions": global_pool,
    }
    if to_k is not None:
        config["cross_attention_dim"] = int(to_k.shape[1])
    add = _shape(state, "add_embedding.linear_1.weight")
    if add is not None:
        config.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=TIME_ID_WIDTH,
            projection_class_embeddings_input_dim=add[1],
        )
    cls = _shape(state, "class_embedding.linear_1.weight")
    if cls is not None:
        config.update(class_embed_type="projection", projection_class_embeddings_input_dim=cls[1])
    return config


def is_shuffle(path: Path) -> bool:
    return path.stem.endswith(SHUFFLE_SUFFIXES) or path.name.endswith(SHUFFLE_SUFFIXES)


def load_controlnet_file(path: Path, dtype: Any, allow_pickle: bool) -> Any:
    """A ControlNetModel from one weights file, with nothing beside it."""
    from diffusers import ControlNetModel

    from easel.models.state_dicts import load_into, read_state_dict

    what = path.name
    raw = read_state_dict(path, allow_pickle)
    from easel.models import qwen_instantx_controlnet as qwen

    if qwen.is_qwen_instantx(raw):  # InstantX's Qwen-Image ControlNets
        return qwen.load_qwen_controlnet(path, raw, dtype)
    state = diffusers_state_dict(raw, what)
    config = controlnet_config(state, what, global_pool=is_shuffle(path))
    try:
        return load_into(ControlNetModel, config, state, dtype, f"ControlNet {what}")
    except ModelError as exc:
        raise ModelError(f"{what}: {exc}") from None
    except (RuntimeError, ValueError) as exc:
        raise ModelError(
            f"{what}: the weights do not fit the ControlNet read off their shapes: {exc}"
        ) from None


def load_controlnet_folder(folder: Path, dtype: Any, allow_pickle: bool) -> Any:
    """A ControlNetModel from a diffusers folder (config.json + weights)."""
    from easel.models import loading

    config = loading.read_json(folder / "config.json")
    class_name = str(config.get("_class_name", "ControlNetModel"))
    if class_name != "ControlNetModel":
        raise ModelError(
            f"{folder.name} holds a {class_name}; Easel loads ControlNetModel "
            "folders (Stable Diffusion 1.x, 2.x and XL ControlNets)"
        )
    return loading.load_module(folder, "diffusers", class_name, dtype, allow_pickle)


def load_controlnet(path: Path, dtype: Any, allow_pickle: bool = False) -> Any:
    """A diffusers ControlNetModel from a diffusers folder or a single weights file."""
    if path.is_dir():
        return load_controlnet_folder(path, dtype, allow_pickle)
    if not path.is_file():
        raise ModelError(f"no ControlNet at {path}")
    return load_controlnet_file(path, dtype, allow_pickle)


def controlnet_handle(manager: Any, name: str, path: Path) -> ControlNetHandle:
    """The ControlNet at `path`, loaded once by `manager` and shared."""
    key = (str(path.resolve()), "controlnet")
    model = manager.load_module(
        key, lambda: load_controlnet(path, manager.dtype, manager.allow_unsafe_pickle)
    )
    return ControlNetHandle(name, model, manager, path)


sizeof.register(ControlNetHandle)(lambda value: 0)
sizeof.register(Control)(lambda value: sizeof(value.hint))
