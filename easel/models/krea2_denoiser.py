"""The Krea 2 network adapter of the sampler loop, calling Krea2Transformer2DModel as
Krea2Pipeline does: latents [B, 16, h, w] packed into 2x2 patches (tokens of 64), the tapped
text states [B, T, 12, D] (the conditioning carries them as [B, T, 12 * D], as ComfyUI does)
with their mask, rotary positions (text tokens at the origin, image tokens at (0, row,
column)), and the timestep as a sigma (t / 1000). The loop keeps latents unpacked. Each side
of classifier-free guidance is its own call, as the pipeline's.

Krea2Pipeline's guidance_scale g means `cond + g * (cond - uncond)`: ComfyUI's (and Easel's)
cfg is g + 1.
"""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch
from easel.models.flux_denoiser import pack, unpack


class Krea2Network:
    """Calls a Krea2Transformer2DModel (`call`: the module, or it with LoRA patches bound)."""

    def __init__(self, transformer: Any, call: Any, family: Any) -> None:
        self.transformer, self.call, self.family = transformer, call, family
        self.patch = int(getattr(family, "patch", 2))
        self.step, self.total = 0, 0

    def condition(
        self,
        cond: dict[str, Any],
        batch: int,
        device: Any,
        dtype: Any,
        *,
        pixel_size: tuple[int, int],
        negative: bool = False,
    ) -> Cond:
        import torch

        config = self.transformer.config
        layers, width = int(config.num_text_layers), int(config.text_hidden_dim)
        embeds = cond.get("embeds")
        if embeds is None or embeds.dim() != 3:
            raise ValueError(
                "Krea 2 needs Qwen3-VL's tapped hidden states: encode the prompt with a Krea 2 "
                "CLIP (TextEncoderLoader type krea2)"
            )
        if embeds.shape[-1] != layers * width:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this Krea 2 model expects "
                f"{layers} x {width} (its text encoder's tapped layers): was the CLIP made for "
                "another model?"
            )
        if cond.get("control"):
            raise ValueError("ControlNet conditioning is not supported for Krea 2 models")
        if cond.get("reference_latents"):
            raise ValueError("Krea 2 takes no reference latents (ReferenceLatent) in Easel yet")
        mask = cond.get("attention_mask")
        if mask is None or tuple(mask.shape) != tuple(embeds.shape[:2]):
            mask = torch.ones(embeds.shape[:2], dtype=torch.bool)
        mask = mask.to(device=device, dtype=torch.bool)
        if mask.shape[0] != batch:
            mask = mask.expand(batch, -1)
        stacked = embeds.unflatten(-1, (layers, width))
        return Cond(to_batch(stacked, batch, device, dtype), {"mask": mask}, None)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call, as Krea2Pipeline's guidance

    def positions(self, text: int, rows: int, columns: int, device: Any) -> Any:
        """Krea2Pipeline's rotary coordinates [text + rows * columns, 3]."""
        import torch

        image = torch.zeros(rows, columns, 3, device=device)
        image[..., 1] = torch.arange(rows, device=device)[:, None]
        image[..., 2] = torch.arange(columns, device=device)[None, :]
        return torch.cat([torch.zeros(text, 3, device=device), image.reshape(-1, 3)], dim=0)

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        batch, _, height, width = x.shape
        if height % self.patch or width % self.patch:
            raise ValueError(
                f"Krea 2 packs latents in {self.patch}x{self.patch} patches: the image's width "
                f"and height must be multiples of {8 * self.patch}"
            )
        tokens = pack(x, self.patch)
        hidden = cond.encoder_hidden_states
        mask = cond.added["mask"] if cond.added else None
        ids = self.positions(hidden.shape[1], height // self.patch, width // self.patch, x.device)
        out = self.call(
            hidden_states=tokens,
            encoder_hidden_states=hidden,
            timestep=(t.expand(batch) / 1000).to(x.dtype),
            position_ids=ids,
            encoder_attention_mask=None if mask is None or bool(mask.all()) else mask,
            return_dict=False,
        )[0]
        return unpack(out, height, width, self.patch)
