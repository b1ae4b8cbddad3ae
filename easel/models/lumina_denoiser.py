"""The Z-Image and Lumina 2 network adapters of the sampler loop, calling the transformers as
ZImagePipeline and Lumina2Pipeline do:

- both count time the other way round (t = 0 is noise, 1 the image): the model sees
  1 - sigma, and its output is the negated velocity the flow scheduler steps with;
- Z-Image's transformer takes lists: one [C, 1, h, w] latent and one [T, D] caption (its
  unpadded tokens) per image, and patches 2x2 itself;
- Lumina 2's takes [B, C, h, w] latents, [B, T, D] captions and their attention mask.

The loop keeps latents [B, 16, h, w]. Each side of classifier-free guidance is its own call
(`stack` gives None), as Lumina2Pipeline calls it; ZImagePipeline batches both sides into one
list call, the same numbers per image.
"""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch


class _LuminaNetwork:
    """What both adapters share: the caption embeddings and their mask, checked."""

    def __init__(self, transformer: Any, call: Any, family: Any) -> None:
        self.transformer, self.call, self.family = transformer, call, family
        self.step, self.total = 0, 0

    def caption_width(self) -> int:
        raise NotImplementedError

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

        embeds = cond.get("embeds")
        label = self.family.label
        if embeds is None:
            raise ValueError(
                f"{label} needs its language model's text embeddings: encode the prompt with "
                "its CLIP (TextEncoderLoader type lumina2)"
            )
        width = self.caption_width()
        if embeds.shape[-1] != width:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this {label} model "
                f"expects {width} (its text encoder's): was the CLIP made for another model?"
            )
        if cond.get("control"):
            raise ValueError(f"ControlNet conditioning is not supported for {label} models yet")
        if cond.get("reference_latents"):
            raise ValueError(f"{label} takes no reference latents (ReferenceLatent)")
        mask = cond.get("attention_mask")
        if mask is None or tuple(mask.shape) != tuple(embeds.shape[:2]):
            mask = torch.ones(embeds.shape[:2], dtype=torch.bool)
        mask = mask.to(device=device, dtype=torch.bool)
        if mask.shape[0] != batch:
            mask = mask.expand(batch, -1)
        return Cond(to_batch(embeds, batch, device, dtype), {"mask": mask}, None)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None


class ZImageNetwork(_LuminaNetwork):
    """Calls a ZImageTransformer2DModel (`call`: the module, or it with LoRA patches bound)."""

    def caption_width(self) -> int:
        return int(self.transformer.config.cap_feat_dim)

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        import torch

        batch, _, height, width = x.shape
        if height % 2 or width % 2:
            raise ValueError(
                "Z-Image packs latents in 2x2 patches: the image's width and height must be "
                "multiples of 16"
            )
        timestep = (1000 - t.expand(batch)) / 1000
        mask = cond.added["mask"] if cond.added else None
        hidden = cond.encoder_hidden_states
        captions = [hidden[i] if mask is None else hidden[i][mask[i]] for i in range(batch)]
        latents = list(x.unsqueeze(2).unbind(dim=0))
        out = self.call(latents, timestep, captions, return_dict=False)[0]
        return -torch.stack([o.to(x.dtype) for o in out], dim=0).squeeze(2)


class Lumina2Network(_LuminaNetwork):
    """Calls a Lumina2Transformer2DModel (`call`: the module, or it with LoRA patches bound)."""

    def caption_width(self) -> int:
        return int(self.transformer.config.cap_feat_dim)

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        batch, _, height, width = x.shape
        if height % 2 or width % 2:
            raise ValueError(
                "Lumina 2 packs latents in 2x2 patches: the image's width and height must be "
                "multiples of 16"
            )
        timestep = (1 - t / 1000).expand(batch)
        mask = cond.added["mask"] if cond.added else None
        out = self.call(
            hidden_states=x,
            timestep=timestep,
            encoder_hidden_states=cond.encoder_hidden_states,
            encoder_attention_mask=mask,
            return_dict=False,
        )[0]
        return -out
