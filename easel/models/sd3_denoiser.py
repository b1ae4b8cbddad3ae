"""The SD3 network adapter of the sampler loop: an SD3Transformer2DModel called as diffusers'
StableDiffusion3Pipeline calls it: latents [B, 16, h, w] as they are (the model patch-embeds
them), the scheduler's timestep (sigma * 1000) unscaled, the joint text embeddings (CLIP-L ++
CLIP-G padded to T5's width, then T5) and the pooled CLIP-L ++ CLIP-G embedding. Both guidance
sides run as one batch, uncond first, as the pipeline does.

Widths the text encoders could not know are completed here from the transformer's config, as
the pipeline and ComfyUI complete them: embeddings narrower than `joint_attention_dim` (no T5
encoder) are padded with zeros, a missing pooled embedding (T5 alone) is zeros."""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, stack, to_batch


class SD3Network:
    """Calls an SD3Transformer2DModel (`call`: the module, or it with LoRA patches bound)."""

    def __init__(self, transformer: Any, call: Any, family: Any) -> None:
        self.transformer, self.call, self.family = transformer, call, family
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
        import torch.nn.functional as F

        config = self.transformer.config
        embeds, pooled = cond.get("embeds"), cond.get("pooled")
        if embeds is None or embeds.dim() != 3:
            raise ValueError(
                "SD3 needs text embeddings: encode the prompt with an SD3 CLIP "
                "(TripleTextEncoderLoader type sd3, or the checkpoint's)"
            )
        width = int(config.joint_attention_dim)
        if embeds.shape[-1] > width:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this SD3 model takes "
                f"{width} (its T5 encoder's): was the CLIP made for another model?"
            )
        embeds = F.pad(embeds, (0, width - embeds.shape[-1]))
        pooled_width = int(config.pooled_projection_dim)
        if pooled is None:
            pooled = torch.zeros(embeds.shape[0], pooled_width)
        if pooled.shape[-1] != pooled_width:
            raise ValueError(
                f"the pooled text embedding has width {pooled.shape[-1]} but this SD3 model "
                f"takes {pooled_width} (CLIP-L's and CLIP-G's): was the CLIP made for another "
                "model?"
            )
        if cond.get("control"):
            raise ValueError("ControlNet conditioning is not supported for SD3 models yet")
        return Cond(
            to_batch(embeds, batch, device, dtype),
            {"pooled_projections": to_batch(pooled, batch, device, dtype)},
            None,
        )

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return stack(a, b)  # one batch, uncond first (StableDiffusion3Pipeline)

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        patch = int(self.transformer.config.patch_size)
        height, width = x.shape[-2:]
        if height % patch or width % patch:
            raise ValueError(
                f"SD3 embeds latents in {patch}x{patch} patches: the image's width and height "
                f"must be multiples of {8 * patch}"
            )
        added = cond.added or {}
        return self.call(
            hidden_states=x,
            timestep=t.expand(x.shape[0]),
            encoder_hidden_states=cond.encoder_hidden_states,
            pooled_projections=added.get("pooled_projections"),
            return_dict=False,
        )[0]
