"""Anima's ControlNet-LLLite (kohya-ss's "lite" ControlNet for the Cosmos DiT; ComfyUI's
ModelPatchLoader + AnimaLLLiteApply, files such as anima-lllite-any-test-like-v2.safetensors):
a small conditioning network turns the control image into one embedding per DiT token, and a
tiny module per targeted Linear adds a control-dependent term to that Linear's input.

Hand-written here because no library implements it (neither diffusers nor any package on PyPI
has LLLite); the architecture is read off what the file holds (its v2 "named key" layout and
metadata), the behaviour is what ComfyUI does with it:

- `lllite_conditioning1`: conv 4x4 stride 4 (to half the width), group norm, SiLU; conv 3x3,
  group norm, SiLU; conv 4x4 stride 4, group norm, SiLU (the image's pixels / 16: the DiT's
  2x2 patches of latents / 8); residual blocks (group norm, SiLU, conv 3x3, twice); an optional
  ASPP (dilated 3x3 branches, 1x1 for dilation 1, and a pooled global branch, each conv +
  group norm + SiLU, projected back by 1x1 + group norm + SiLU; dilations from the metadata
  `lllite.aspp_dilations`, 1,2,4,8 by default); a 1x1 projection, flattened to tokens (rows
  then columns) and layer-normed. Group norms take 8 groups, halved until they divide.
- `lllite_dit_blocks_<i>_<target>` for targets self_attn_{q,k,v}_proj, cross_attn_q_proj and
  mlp_layer1 of DiT block i: with c = the embedding + the module's `depth_embed`,
  h = SiLU(down(x)); (gamma, beta) = cond_to_film(c); h = mid([c, h]);
  h = SiLU(h * (1 + gamma) + beta); the Linear's input x becomes x + up(h) * strength.
  In diffusers' CosmosTransformer3DModel those Linears are attn1.to_q / to_k / to_v,
  attn2.to_q and ff.net.0.proj of transformer_blocks[i].
- The control image is resized (bicubic, centre crop) to the latent's size times 8, clamped to
  [0, 1] and mapped to [-1, 1]; a 4-channel patch (inpainting) adds the mask (nearest, 1 where
  to paint, thresholded at 0.5) as a fourth channel in [-1, 1], and blanks the masked pixels of
  the image first when the metadata says `lllite.inpaint_masked_input` true.
- The patch acts while the step's sigma lies within [sigma(end_percent), sigma(start_percent)].
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from easel.models.errors import ModelError

CONDITIONING = "lllite_conditioning1."
MODULE = re.compile(r"lllite_dit_blocks_(\d+)_(self_attn_[qkv]_proj|cross_attn_q_proj|mlp_layer1)")
# each target's Linear in a diffusers CosmosTransformerBlock
TARGETS = {
    "self_attn_q_proj": "attn1.to_q",
    "self_attn_k_proj": "attn1.to_k",
    "self_attn_v_proj": "attn1.to_v",
    "cross_attn_q_proj": "attn2.to_q",
    "mlp_layer1": "ff.net.0.proj",
}
DEFAULT_DILATIONS = "1,2,4,8"


def is_anima_lllite(state: Mapping[str, Any]) -> bool:
    """Whether a model patch's keys are an Anima LLLite's (v2, named keys)."""
    return CONDITIONING + "conv1.weight" in state and any(
        k.startswith("lllite_dit_blocks_") for k in state
    )


def group_norm(channels: int) -> nn.GroupNorm:
    groups = 8
    while groups > 1 and channels % groups:
        groups //= 2
    return nn.GroupNorm(groups, channels)


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = group_norm(channels), group_norm(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


def _conv_norm_silu(conv: nn.Conv2d, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, group_norm(channels), nn.SiLU())


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: dilated branches and a global one, projected back."""

    def __init__(self, channels: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            _conv_norm_silu(
                nn.Conv2d(channels, channels, 1)
                if d == 1
                else nn.Conv2d(channels, channels, 3, padding=d, dilation=d),
                channels,
            )
            for d in dilations
        )
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.global_conv = _conv_norm_silu(nn.Conv2d(channels, channels, 1), channels)
        self.proj = _conv_norm_silu(
            nn.Conv2d(channels * (len(dilations) + 1), channels, 1), channels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.global_conv(self.global_pool(x))
        pooled = F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.proj(torch.cat([*(branch(x) for branch in self.branches), pooled], dim=1))


class Conditioning(nn.Module):
    """The control image [B, C, H, W] in [-1, 1] -> one embedding per DiT token [B, HW/256, E]."""

    def __init__(
        self, inputs: int, width: int, embed: int, blocks: int, dilations: tuple[int, ...]
    ) -> None:
        super().__init__()
        half = width // 2
        self.conv1 = nn.Conv2d(inputs, half, 4, stride=4)
        self.norm1 = group_norm(half)
        self.conv2 = nn.Conv2d(half, half, 3, padding=1)
        self.norm2 = group_norm(half)
        self.conv3 = nn.Conv2d(half, width, 4, stride=4)
        self.norm3 = group_norm(width)
        self.resblocks = nn.ModuleList(ResBlock(width) for _ in range(blocks))
        self.aspp = ASPP(width, dilations) if dilations else None
        self.proj = nn.Conv2d(width, embed, 1)
        self.out_norm = nn.LayerNorm(embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.norm1(self.conv1(x)))
        x = F.silu(self.norm2(self.conv2(x)))
        x = F.silu(self.norm3(self.conv3(x)))
        for block in self.resblocks:
            x = block(x)
        if self.aspp is not None:
            x = self.aspp(x)
        return self.out_norm(self.proj(x).flatten(2).transpose(1, 2))


class LLLiteModule(nn.Module):
    """The control term one targeted Linear's input gets."""

    def __init__(self, width: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Linear(width, hidden)
        self.mid = nn.Linear(hidden + embed, hidden)
        self.cond_to_film = nn.Linear(embed, 2 * hidden)
        self.up = nn.Linear(hidden, width)
        self.depth_embed = nn.Parameter(torch.zeros(embed), requires_grad=False)

    def delta(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        if embedding.shape[0] != x.shape[0]:
            if x.shape[0] % embedding.shape[0]:
                raise ValueError(
                    f"Anima LLLite: the model's batch {x.shape[0]} is no multiple of the "
                    f"control image's {embedding.shape[0]}"
                )
            embedding = embedding.repeat(x.shape[0] // embedding.shape[0], 1, 1)
        if embedding.shape[1] != x.shape[1]:
            raise ValueError(
                f"Anima LLLite: the model has {x.shape[1]} tokens, the control image "
                f"{embedding.shape[1]}"
            )
        c = embedding + self.depth_embed.to(embedding)
        h = F.silu(self.down(x))
        gamma, beta = self.cond_to_film(c).chunk(2, dim=-1)
        h = F.silu(self.mid(torch.cat([c, h], dim=-1)) * (1 + gamma) + beta)
        return self.up(h)


class AnimaLLLite(nn.Module):
    """The whole patch: the conditioning network and one LLLiteModule per target (by name)."""

    def __init__(self, state: Mapping[str, Any], metadata: Mapping[str, str]) -> None:
        super().__init__()
        version = str(metadata.get("lllite.version", "2"))
        if version != "2":
            raise ModelError(f"Anima LLLite version {version!r}: Easel reads version 2 files")
        conv1 = state[CONDITIONING + "conv1.weight"].shape
        width = int(state[CONDITIONING + "conv3.weight"].shape[0])
        embed = int(state[CONDITIONING + "proj.weight"].shape[0])
        blocks = {int(k.split(".")[2]) for k in state if k.startswith(CONDITIONING + "resblocks.")}
        dilations: tuple[int, ...] = ()
        if any(k.startswith(CONDITIONING + "aspp.") for k in state):
            text = str(metadata.get("lllite.aspp_dilations", DEFAULT_DILATIONS))
            dilations = tuple(int(v) for v in text.split(",") if v.strip())
        self.inputs = int(conv1[1])
        self.masked_input = str(metadata.get("lllite.inpaint_masked_input", "false")).lower() == (
            "true"
        )
        self.lllite_conditioning1 = Conditioning(
            self.inputs, width, embed, max(blocks) + 1 if blocks else 0, dilations
        )
        self.targets: dict[tuple[int, str], str] = {}
        names = sorted({k.split(".", 1)[0] for k in state if k.startswith("lllite_dit_blocks_")})
        for name in names:
            match = MODULE.fullmatch(name)
            if match is None:
                raise ModelError(f"Anima LLLite module {name!r} targets no layer Easel knows")
            hidden, model_width = (int(n) for n in state[name + ".down.weight"].shape)
            self.add_module(name, LLLiteModule(model_width, embed, hidden))
            self.targets[(int(match.group(1)), match.group(2))] = name
        self.model_width = model_width if names else 0
        self.blocks = 1 + max(block for block, _ in self.targets) if self.targets else 0

    def embedding(self, image: torch.Tensor) -> torch.Tensor:
        return self.lllite_conditioning1(image)  # type: ignore[no-any-return]


def read_metadata(path: Path) -> dict[str, str]:
    """A safetensors file's metadata ({} for other files)."""
    if path.suffix.lower() not in (".safetensors", ".sft"):
        return {}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def load(state: Mapping[str, Any], dtype: Any, path: Path) -> AnimaLLLite:
    """The AnimaLLLite of a model patch file's state dict, in `dtype`."""
    try:
        module = AnimaLLLite(state, read_metadata(path))
        module.load_state_dict({k: v for k, v in state.items()}, strict=True)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ModelError(f"{path.name} does not fit Anima's LLLite ({exc})") from None
    return module.to(dtype).eval().requires_grad_(False)


def check_fits(module: AnimaLLLite, transformer: Any, label: str) -> None:
    """ModelError when the patch's blocks or width are not the transformer's."""
    blocks = len(transformer.transformer_blocks)
    width = int(transformer.config.num_attention_heads * transformer.config.attention_head_dim)
    if module.blocks > blocks or module.model_width != width:
        raise ModelError(
            f"{label} is for a DiT of {module.blocks}+ blocks {module.model_width} wide; this "
            f"Anima model has {blocks} blocks {width} wide"
        )


# -- the control image ------------------------------------------------------------------------
def _center_crop(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`image` cropped about its centre to the aspect of height x width."""
    old_h, old_w = image.shape[-2:]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    return image[..., y : old_h - y, x : old_w - x]


def control_input(
    image: torch.Tensor, mask: torch.Tensor | None, height: int, width: int, module: AnimaLLLite
) -> torch.Tensor:
    """The conditioning network's input at height x width pixels: the image [B, 3, H, W] in
    [0, 1] (with the mask channel for a 4-channel patch), in [-1, 1]."""
    pixels = F.interpolate(
        _center_crop(image[:, :3].float(), height, width),
        size=(height, width),
        mode="bicubic",
        align_corners=False,
    ).clamp(0.0, 1.0)
    pixels = pixels * 2.0 - 1.0
    if module.inputs == 3:
        return pixels
    if module.inputs != 4:
        raise ModelError(f"an Anima LLLite reading {module.inputs} channels is not supported")
    if mask is None:
        raise ModelError("this Anima LLLite is an inpainting patch: it needs a mask")
    planes = mask.float()
    planes = planes[:, None] if planes.dim() == 3 else planes
    planes = F.interpolate(
        _center_crop(planes, height, width), size=(height, width), mode="nearest-exact"
    )
    if planes.shape[0] != pixels.shape[0]:
        if pixels.shape[0] % planes.shape[0]:
            raise ModelError(
                f"the mask's batch {planes.shape[0]} does not divide the image's {pixels.shape[0]}"
            )
        planes = planes.repeat(pixels.shape[0] // planes.shape[0], 1, 1, 1)
    planes = (planes >= 0.5).float()
    if module.masked_input:
        pixels = pixels * (planes < 0.5).float()
    return torch.cat([pixels, planes * 2.0 - 1.0], dim=1)


class AnimaLLLiteControl:
    """One AnimaLLLiteApply on an Anima model: the patch, its control image (and mask), the
    strength and the sigma window; `wrap` makes the transformer call that applies it."""

    def __init__(
        self,
        module: AnimaLLLite,
        image: torch.Tensor,
        mask: torch.Tensor | None,
        strength: float,
        sigma_start: float,
        sigma_end: float,
        manager: Any = None,
    ) -> None:
        self.module, self.image, self.mask = module, image, mask
        self.strength, self.sigma_start, self.sigma_end = strength, sigma_start, sigma_end
        self.manager = manager
        self.cache: dict[tuple[int, int], torch.Tensor] = {}

    def wrap(self, transformer: Any, call: Any) -> Any:
        return _LLLiteCall(self, transformer, call)

    def active(self, sigma: float) -> bool:
        return self.strength != 0.0 and self.sigma_end <= sigma <= self.sigma_start

    def embedding(self, height: int, width: int, device: Any, dtype: Any) -> torch.Tensor:
        """The control embedding for a latent of height x width, computed once per size."""
        if (height, width) not in self.cache:
            self.cache.clear()
            module = self.manager.place(self.module) if self.manager else self.module
            param = next(module.parameters())
            pixels = control_input(self.image, self.mask, height * 8, width * 8, module)
            with torch.inference_mode():
                self.cache[(height, width)] = module.embedding(pixels.to(param.device, param.dtype))
        return self.cache[(height, width)].to(device=device, dtype=dtype)


class _LLLiteCall:
    """The transformer's call with the LLLite terms added to its targeted Linears' inputs
    (forward pre-hooks, removed after the call: the shared transformer is not changed)."""

    def __init__(self, control: AnimaLLLiteControl, transformer: Any, inner: Any) -> None:
        self.control, self.transformer, self.inner = control, transformer, inner

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "control", "transformer"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        control = self.control
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        if hidden is None or timestep is None or not control.active(float(timestep.max())):
            return self.inner(*args, **kwargs)
        if hidden.dim() != 5 or hidden.shape[2] != 1:
            raise ValueError("Anima LLLite applies to images (one frame)")
        embedding = control.embedding(
            hidden.shape[-2], hidden.shape[-1], hidden.device, hidden.dtype
        )
        module, strength = control.module, control.strength
        blocks = self.transformer.transformer_blocks
        handles = []

        def hook(lllite: LLLiteModule) -> Any:
            def add(_: nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
                x = inputs[0]
                return (x + lllite.delta(x, embedding.to(x.dtype)) * strength, *inputs[1:])

            return add

        try:
            for (block, target), name in module.targets.items():
                linear = blocks[block].get_submodule(TARGETS[target])
                handles.append(linear.register_forward_pre_hook(hook(getattr(module, name))))
            return self.inner(*args, **kwargs)
        finally:
            for handle in handles:
                handle.remove()


def apply(
    model: Any,
    patch: Any,
    image: torch.Tensor,
    strength: float,
    start_percent: float,
    end_percent: float,
    mask: torch.Tensor | None = None,
) -> Any:
    """A ModelHandle on the same Anima transformer with the LLLite `patch` applied."""
    from easel.models.skip_layer_guidance import percent_to_sigma

    family = getattr(model, "family", None)
    if getattr(family, "network", None) != "anima":
        label = getattr(family, "label", None) or "Stable Diffusion"
        raise ModelError(f"{patch.label} is made for Anima models, not {label} models")
    check_fits(patch.module, model.unet, patch.label)
    if patch.module.inputs == 4 and mask is None:
        raise ModelError(f"{patch.label} is an inpainting patch: link the mask to paint")
    config = dict(model.scheduler_config)
    control = AnimaLLLiteControl(
        patch.module,
        image.detach().float().cpu(),
        None if mask is None else mask.detach().float().cpu(),
        float(strength),
        percent_to_sigma(config, float(start_percent)),
        percent_to_sigma(config, float(end_percent)),
        patch.manager,
    )
    return model.with_model_patch(control)
