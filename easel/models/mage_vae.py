"""The Mage-VAE (Microsoft's Mage, MIT): Mage-Flow's codec between images and 128-channel
latents at 1/16 of the image, both ways a one-step diffusion model run once at t = 0.

No library has it (diffusers 0.42 has no class for it), so it is written here from its
architecture as ComfyUI's comfy/ldm/mage_flow/vae.py runs it:

- encode: a DConv encoder (a patch embedding of the image through convolutional DiCo blocks,
  fused with a zero latent, adaLN-modulated at t = 0) predicts the posterior's mean and
  log-variance; the latent is the mean (no sampling, no scaling, no shift);
- decode: a CoD decoder (ResNet blocks and windowed self-attention at latent resolution) turns
  the latent into conditioning features; a DConv denoiser reconstructs the image from zero
  noise in one step at t = 0: DiCo blocks over 16x16 patches, then per pixel of each patch an
  MLP (NeRF-style DCT position features) modulated by its patch's features.

The file (`vae/mage_flow_vae_bf16.safetensors`) keeps the encoder under
`student.dconv_encoder.` and the decoder under `pipeline.`; `pipeline.y_embedder.encoder.` and
`pipeline.y_embedder.bottleneck.` (the Flux.2 anchor VAE of training) are not used. Widths and
depths are read off the shapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ENCODER_PREFIX = "student.dconv_encoder."
DECODER_PREFIX = "pipeline."
UNUSED_PREFIXES = ("pipeline.y_embedder.encoder.", "pipeline.y_embedder.bottleneck.")
MARKER = ENCODER_PREFIX + "proj_out.weight"
FREQUENCIES = 256
GROUPS = 32
WINDOW = 32  # the CoD decoder's attention windows, in latent pixels


def is_mage_vae(state: Mapping[str, Any]) -> bool:
    """Whether a VAE file holds the Mage-VAE (its DConv encoder and its decoder pipeline)."""
    return MARKER in state and DECODER_PREFIX + "y_embedder.decoder.conv_in.weight" in state


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of [B, C, H, W]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def timestep_features(t: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, 256]: (cos, sin) of t * exp(-ln(10000) k / 128)."""
    half = FREQUENCIES // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs.to(t.device)[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(FREQUENCIES, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.mlp(timestep_features(t).to(dtype))


def modulated(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, :, None, None]) + shift[:, :, None, None]


class DiCoBlock(nn.Module):
    """A convolutional block: pointwise, depthwise 3x3 and pointwise convolutions with channel
    attention, then a pointwise MLP; adaLN-modulated by the timestep (`adaptive`) or with
    affine norms (the encoder's head)."""

    def __init__(self, hidden: int, ffn: int, adaptive: bool = True) -> None:
        super().__init__()
        self.adaptive = adaptive
        self.conv1 = nn.Conv2d(hidden, hidden, 1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.conv3 = nn.Conv2d(hidden, hidden, 1)
        self.ca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(hidden, hidden, 1), nn.Sigmoid())
        self.conv4 = nn.Conv2d(hidden, ffn, 1)
        self.conv5 = nn.Conv2d(ffn, hidden, 1)
        self.norm1 = LayerNorm2d(hidden, eps=1e-6, elementwise_affine=not adaptive)
        self.norm2 = LayerNorm2d(hidden, eps=1e-6, elementwise_affine=not adaptive)
        if adaptive:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, inp: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x1, x2 = self.norm1(inp), None
        if self.adaptive:
            assert c is not None
            shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=1)
            x1 = modulated(x1, shift1, scale1)
        x = F.gelu(self.conv2(self.conv1(x1)))
        x = self.conv3(x * self.ca(x))
        x = inp + (gate1[:, :, None, None] * x if self.adaptive else x)
        x2 = self.norm2(x)
        if self.adaptive:
            x2 = modulated(x2, shift2, scale2)
        out = self.conv5(F.gelu(self.conv4(x2)))
        return x + (gate2[:, :, None, None] * out if self.adaptive else out)


@dataclass(frozen=True)
class EncoderConfig:
    z_channels: int
    hidden: int
    head: int
    ffn: int
    head_ffn: int
    blocks: int
    head_blocks: int
    patch: int
    out_channels: int


class DConvEncoder(nn.Module):
    """Image -> [mean, log-variance] of the latent, one step at t = 0 from a zero latent."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_cond_embed = nn.Conv2d(3, cfg.head, cfg.patch, stride=cfg.patch)
        self.head_blocks = nn.ModuleList(
            DiCoBlock(cfg.head, cfg.head_ffn, adaptive=False) for _ in range(cfg.head_blocks)
        )
        self.proj_down = nn.Conv2d(cfg.head, cfg.hidden, 1)
        self.z_proj = nn.Conv2d(cfg.z_channels, cfg.hidden, 1)
        self.fuse_proj = nn.Conv2d(2 * cfg.hidden, cfg.hidden, 1)
        self.t_embedder = TimestepEmbedder(cfg.hidden)
        self.blocks = nn.ModuleList(DiCoBlock(cfg.hidden, cfg.ffn) for _ in range(cfg.blocks))
        self.norm_out = LayerNorm2d(cfg.hidden, eps=1e-6)
        self.proj_out = nn.Conv2d(cfg.hidden, cfg.out_channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        b, _, h, w = image.shape
        p = self.cfg.patch
        cond = self.patch_cond_embed(image)
        for block in self.head_blocks:
            cond = block(cond)
        zero = image.new_zeros(b, self.cfg.z_channels, h // p, w // p)
        s = self.fuse_proj(torch.cat([self.proj_down(cond), self.z_proj(zero)], dim=1))
        c = self.t_embedder(image.new_zeros(b), image.dtype)
        for block in self.blocks:
            s = block(s, c)
        return self.proj_out(self.norm_out(s))


class ResnetBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, channels, eps=1e-6)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(GROUPS, channels, eps=1e-6)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class WindowAttention(nn.Module):
    """Self-attention within 32 x 32 windows; the input is padded (edge values repeated) to
    whole windows after the projections, the padding attended to, then cut off."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(GROUPS, channels, eps=1e-6)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        d = WINDOW
        pad_h, pad_w = (-h) % d, (-w) % d
        normed = self.norm(x)
        qkv = [proj(normed) for proj in (self.q, self.k, self.v)]
        if pad_h or pad_w:
            qkv = [F.pad(t, (0, pad_w, 0, pad_h), mode="replicate") for t in qkv]
        rows, cols = (h + pad_h) // d, (w + pad_w) // d

        def windows(t: torch.Tensor) -> torch.Tensor:  # [B * windows, 1, d*d, C]
            t = t.reshape(b, c, rows, d, cols, d).permute(0, 2, 4, 3, 5, 1)
            return t.reshape(b * rows * cols, 1, d * d, c)

        query, key, value = (windows(t) for t in qkv)
        out = F.scaled_dot_product_attention(query, key, value)
        out = out.reshape(b, rows, cols, d, d, c).permute(0, 5, 1, 3, 2, 4)
        out = out.reshape(b, c, rows * d, cols * d)[:, :, :h, :w]
        return x + self.proj_out(out)


class CoDDecoder(nn.Module):
    """Latent -> the denoiser's conditioning features, at latent resolution."""

    def __init__(self, channels: int, z_channels: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(z_channels, channels, 3, padding=1)
        self.block = nn.Sequential(
            ResnetBlock(channels),
            WindowAttention(channels),
            ResnetBlock(channels),
            WindowAttention(channels),
            ResnetBlock(channels),
        )
        self.norm_out = nn.GroupNorm(GROUPS, channels, eps=1e-6)
        self.conv_out = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.block(self.conv_in(z))
        return self.conv_out(F.silu(self.norm_out(h)))


class BottleneckPatchEmbed(nn.Module):
    def __init__(self, patch: int, bottleneck: int, hidden: int) -> None:
        super().__init__()
        self.proj1 = nn.Conv2d(3, bottleneck, patch, stride=patch, bias=False)
        self.proj2 = nn.Conv2d(bottleneck + hidden, hidden, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.proj2(torch.cat([self.proj1(x), cond], dim=1))


def dct_features(patch: int, frequencies: int, device: Any, dtype: torch.dtype) -> torch.Tensor:
    """[1, patch^2, frequencies^2]: cos(pi fx x) cos(pi fy y) / (1 + fx fy) for each pixel
    (x, y in [0, 1]) of a patch, fx and fy `frequencies` values evenly from 0 to `frequencies`."""
    pos = torch.linspace(0, 1, patch, device=device, dtype=dtype)
    pos_y, pos_x = torch.meshgrid(pos, pos, indexing="ij")
    freqs = torch.linspace(0, frequencies, frequencies, device=device, dtype=dtype)
    fx, fy = freqs[None, :, None], freqs[None, None, :]
    dct_x = torch.cos(pos_x.reshape(-1, 1, 1) * fx * torch.pi)
    dct_y = torch.cos(pos_y.reshape(-1, 1, 1) * fy * torch.pi)
    return (dct_x * dct_y / (1 + fx * fy)).reshape(1, patch * patch, frequencies * frequencies)


class NerfEmbedder(nn.Module):
    def __init__(self, channels: int, hidden: int, frequencies: int) -> None:
        super().__init__()
        self.frequencies = frequencies
        self.embedder = nn.Sequential(nn.Linear(channels + frequencies**2, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patch = math.isqrt(x.shape[1])
        dct = dct_features(patch, self.frequencies, x.device, x.dtype).expand(x.shape[0], -1, -1)
        return self.embedder(torch.cat([x, dct], dim=-1))


class MLPResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.in_ln = nn.LayerNorm(channels, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(channels, channels), nn.SiLU(), nn.Linear(channels, channels)
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 3 * channels))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.adaLN_modulation(y).chunk(3, dim=-1)
        return x + gate * self.mlp(self.in_ln(x) * (1 + scale) + shift)


class PixelMLP(nn.Module):
    """Per pixel of each patch: an MLP modulated by its patch's features (`dec_net`)."""

    def __init__(self, channels: int, hidden: int, blocks: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.cond_embed = nn.Linear(hidden, patch * patch * channels)
        self.input_proj = nn.Linear(channels, channels)
        self.res_blocks = nn.ModuleList(MLPResBlock(channels) for _ in range(blocks))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.input_proj(x)
        c = self.cond_embed(c).reshape(c.shape[0], self.patch * self.patch, -1)
        for block in self.res_blocks:
            x = block(x, c)
        return x


class RMSNorm(nn.Module):
    """x / rms(x) in float32, back to x's dtype, times the weight."""

    def __init__(self, hidden: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.float()
        normed = f * torch.rsqrt(f.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


class NerfFinalLayer(nn.Module):
    def __init__(self, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.norm = RMSNorm(hidden)
        self.linear = nn.Linear(hidden, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(x))


@dataclass(frozen=True)
class DecoderConfig:
    hidden: int
    pixel_hidden: int
    ffn: int
    blocks: int
    pixel_blocks: int
    patch: int
    bottleneck: int
    cod_channels: int
    frequencies: int


class YEmbedder(nn.Module):
    def __init__(self, channels: int, z_channels: int) -> None:
        super().__init__()
        self.decoder = CoDDecoder(channels, z_channels)


class DConvDenoiser(nn.Module):
    """Latent features + zero noise -> the image, one step at t = 0."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        p, hx = cfg.patch, cfg.pixel_hidden
        self.t_embedder = TimestepEmbedder(cfg.hidden)
        self.y_embedder_x = nn.Conv2d(cfg.hidden, hx * p * p, 1)
        self.x_embedder = NerfEmbedder(3 + hx, hx, cfg.frequencies)
        self.s_embedder = BottleneckPatchEmbed(p, cfg.bottleneck, cfg.hidden)
        self.blocks = nn.ModuleList(DiCoBlock(cfg.hidden, cfg.ffn) for _ in range(cfg.blocks))
        self.dec_net = PixelMLP(hx, cfg.hidden, cfg.pixel_blocks, p)
        self.final_layer = NerfFinalLayer(hx, 3)
        self.y_embedder = YEmbedder(cfg.cod_channels, cfg.bottleneck)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        cond = self.y_embedder.decoder(z)
        p = self.cfg.patch
        b, _, hs, ws = cond.shape
        x = z.new_zeros(b, 3, hs * p, ws * p)
        c = self.t_embedder(z.new_zeros(b), z.dtype)
        s = self.s_embedder(x, cond)
        for block in self.blocks:
            s = block(s, c)
        length = hs * ws
        s = s.permute(0, 2, 3, 1).reshape(b * length, -1)
        pixels = F.unfold(x, kernel_size=p, stride=p)  # [B, 3 p^2, L], channel-major
        features = torch.cat([pixels, self.y_embedder_x(cond).flatten(2)], dim=1)
        features = features.reshape(b, -1, p * p, length).permute(0, 3, 2, 1).flatten(0, 1)
        out = self.final_layer(self.dec_net(self.x_embedder(features), s))  # [B L, p^2, 3]
        out = out.reshape(b, length, p * p, 3).permute(0, 3, 2, 1).reshape(b, 3 * p * p, length)
        return F.fold(out, (hs * p, ws * p), kernel_size=p, stride=p)


@dataclass(frozen=True)
class MageVaeConfig:
    """What Easel reads of a VAE's config (easel.models.handles.VaeHandle): 128 channels at
    1/16 (block_out_channels only counts levels: 2^(len - 1) is the factor), no scaling or
    shift."""

    latent_channels: int
    block_out_channels: tuple[int, ...]
    scaling_factor: float = 1.0
    shift_factor: float = 0.0


class MageVae(nn.Module):
    """The Mage-VAE as VAEEncode and VAEDecode see it: `encode` images in [-1, 1] -> latents
    (as `.latents`), `decode` latents -> images in [-1, 1]."""

    def __init__(self, encoder: EncoderConfig, decoder: DecoderConfig) -> None:
        super().__init__()
        self.dconv_encoder = DConvEncoder(encoder)
        self.decoder_model = DConvDenoiser(decoder)
        self.latent_channels = encoder.z_channels
        levels = int(math.log2(encoder.patch)) + 1
        self.config = MageVaeConfig(encoder.z_channels, (1,) * levels)

    def encode(self, images: torch.Tensor) -> Any:
        out = self.dconv_encoder(images)
        return SimpleNamespace(latents=out[:, : self.latent_channels])

    def decode(self, latents: torch.Tensor, return_dict: bool = True, **_: Any) -> Any:
        image = self.decoder_model(latents)
        return SimpleNamespace(sample=image) if return_dict else (image,)


def _count(state: Mapping[str, Any], head: str) -> int:
    pattern = re.compile(re.escape(head) + r"(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def configs(state: Mapping[str, Any]) -> tuple[EncoderConfig, DecoderConfig]:
    """The encoder's and decoder's widths and depths, read off a file's shapes."""

    def shape(key: str) -> tuple[int, ...]:
        return tuple(int(n) for n in state[key].shape)

    e, d = ENCODER_PREFIX, DECODER_PREFIX
    hidden, z_channels = shape(e + "z_proj.weight")[:2]
    head, _, patch, _ = shape(e + "patch_cond_embed.weight")
    head_blocks = _count(state, e + "head_blocks.")
    encoder = EncoderConfig(
        z_channels=z_channels,
        hidden=hidden,
        head=head,
        ffn=shape(e + "blocks.0.conv4.weight")[0],
        head_ffn=shape(e + "head_blocks.0.conv4.weight")[0] if head_blocks else 0,
        blocks=_count(state, e + "blocks."),
        head_blocks=head_blocks,
        patch=patch,
        out_channels=shape(e + "proj_out.weight")[0],
    )
    bottleneck, _, dpatch, _ = shape(d + "s_embedder.proj1.weight")
    dhidden = shape(d + "s_embedder.proj2.weight")[0]
    pixel_hidden, embed_in = shape(d + "x_embedder.embedder.0.weight")
    frequencies = math.isqrt(embed_in - 3 - pixel_hidden)
    decoder = DecoderConfig(
        hidden=dhidden,
        pixel_hidden=pixel_hidden,
        ffn=shape(d + "blocks.0.conv4.weight")[0],
        blocks=_count(state, d + "blocks."),
        pixel_blocks=_count(state, d + "dec_net.res_blocks."),
        patch=dpatch,
        bottleneck=bottleneck,
        cod_channels=shape(d + "y_embedder.decoder.conv_in.weight")[0],
        frequencies=frequencies,
    )
    return encoder, decoder


def module_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """The file's keys as MageVae's: the encoder and decoder renamed, the training-only anchor
    VAE left out."""
    out = {}
    for key, value in state.items():
        if key.startswith(UNUSED_PREFIXES):
            continue
        if key.startswith(ENCODER_PREFIX):
            out["dconv_encoder." + key[len(ENCODER_PREFIX) :]] = value
        elif key.startswith(DECODER_PREFIX):
            out["decoder_model." + key[len(DECODER_PREFIX) :]] = value
    return out


def load_mage_vae(path: Any, state: Mapping[str, Any], dtype: Any) -> MageVae:
    """A MageVae from a `vae/` file's state dict; a file that does not fit is a ModelError
    naming it."""
    from easel.models.errors import ModelError

    try:
        encoder, decoder = configs(state)
        vae = MageVae(encoder, decoder)
        vae.load_state_dict(module_state(state), strict=True)
    except (KeyError, RuntimeError, ValueError, IndexError) as exc:
        raise ModelError(
            f"{path.name} looks like the Mage-VAE but does not fit it ({type(exc).__name__}: {exc})"
        ) from None
    return vae.to(dtype).eval()
