"""The Anima network adapter of the sampler loop, calling the model as diffusers' Anima modular
pipeline does: the LLM adapter (AnimaTextConditioner, carried by the transformer) maps each
side's Qwen3 states and T5 ids to the DiT's context, padded to 512 tokens, once per sampling
(AnimaTextConditioningStep); then every step CosmosTransformer3DModel sees the latents as one
frame [B, C, 1, h, w], the sigma as its timestep (t / 1000) and an all-zero padding mask
(AnimaLoopDenoiser). Each side of classifier-free guidance is its own call, as the pipeline's
guider makes them. The loop keeps latents [B, C, h, w].
"""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch


def lora_scope(call: Any) -> Any:
    """The LoRA patches bound to `call` (under any model patches wrapped around it) made
    active, so that a LoRA's layers of the LLM adapter (diffusers' `text_conditioner.`) apply
    to the adapter too; a no-op scope without LoRA."""
    from contextlib import nullcontext

    from easel.models import lora

    while call is not None and not isinstance(call, lora.PatchedModule):
        call = getattr(call, "inner", None)
    if call is None:
        return nullcontext()
    return lora.patched(call.module, call.component, call.patches)


class AnimaNetwork:
    """Calls a CosmosTransformer3DModel (`call`: the module, or it with LoRA or model patches
    bound) with the context its LLM adapter makes."""

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

        from easel.models.anima_loading import conditioner_of

        embeds, ids = cond.get("embeds"), cond.get("t5_ids")
        if embeds is None or ids is None or embeds.dim() != 3:
            raise ValueError(
                "Anima needs Qwen3 hidden states and T5 token ids: encode the prompt with "
                "Anima's text encoder (TextEncoderLoader type stable_diffusion, "
                "qwen_3_06b_base)"
            )
        if cond.get("control"):
            raise ValueError("ControlNet conditioning is not supported for Anima models")
        if cond.get("reference_latents"):
            raise ValueError("Anima takes no reference latents (ReferenceLatent)")
        conditioner = conditioner_of(self.transformer)
        source = int(conditioner.config.source_dim)
        if embeds.shape[-1] != source:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this Anima model's LLM "
                f"adapter reads {source}: was the CLIP made for another model?"
            )
        param = next(conditioner.parameters())
        mask = cond.get("attention_mask")
        source_mask = None
        if mask is not None and bool(mask.any()) and not bool(mask.all()):
            source_mask = mask.to(device=param.device)
        with torch.inference_mode(), lora_scope(self.call):
            context = conditioner(
                source_hidden_states=embeds.to(device=param.device, dtype=param.dtype),
                target_input_ids=ids.to(device=param.device),
                target_attention_mask=None,  # one prompt: every T5 id is a token
                source_attention_mask=source_mask,
            )
        weights = cond.get("t5_weights")
        if weights is not None:  # ComfyUI's t5xxl_weights: per T5 token, before the padding
            count = weights.shape[1]
            scale = weights.to(device=context.device, dtype=context.dtype)[..., None]
            context = torch.cat([context[:, :count] * scale, context[:, count:]], dim=1)
        return Cond(to_batch(context, batch, device, dtype), None, None)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call, as the pipeline's guider

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        batch, _, height, width = x.shape
        if height % 2 or width % 2:
            raise ValueError(
                "Anima packs latents in 2x2 patches: the image's width and height must be "
                "multiples of 16"
            )
        padding = x.new_zeros(1, 1, height, width)
        out = self.call(
            hidden_states=x[:, :, None],
            timestep=(t.expand(batch) / 1000).to(x.dtype),
            encoder_hidden_states=cond.encoder_hidden_states,
            padding_mask=padding,
            return_dict=False,
        )[0]
        return out[:, :, 0]
