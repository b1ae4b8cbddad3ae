"""The OmniGen2 network adapter of the sampler loop, calling easel.models.omnigen2_transformer
(and Boogu's, easel.models.boogu_transformer, which takes the same inputs) as ComfyUI's
Omnigen2 and Boogu models do:

- time runs the other way round (0 is noise, 1 the image): the transformer sees 1 - sigma,
  and its output is the negated velocity the flow sampler steps with;
- the caption is Qwen2.5-VL's hidden states, every token (ComfyUI's `num_tokens`);
- reference latents (ReferenceLatent's, in order) go in as they are: each gets its own frame.

Each side of the guidance is its own call (`stack` gives None): captions differ in length and
the reference latents may differ between conditionings (DualCFGGuider's templates give the
negative none), as ComfyUI, which cannot batch them either, calls them.
"""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch


class OmniGen2Network:
    """Calls an OmniGen2Transformer or BooguTransformer (`call`: the module, or it with
    patches bound)."""

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
        config = self.transformer.config
        label = getattr(self.family, "label", "OmniGen2")
        kind = getattr(self.family, "name", "omnigen2")
        embeds = cond.get("embeds")
        if embeds is None or embeds.dim() != 3:
            raise ValueError(
                f"{label} needs its language model's text embeddings: encode the prompt with "
                f"its CLIP (TextEncoderLoader type {kind})"
            )
        if embeds.shape[-1] != config.text_feat_dim:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this {label} model "
                f"expects {config.text_feat_dim} (its text encoder's): was the CLIP made for "
                "another model?"
            )
        if cond.get("control"):
            raise ValueError(f"ControlNet conditioning is not supported for {label} models")
        references = list(cond.get("reference_latents") or ())
        if len(references) > config.max_references:
            raise ValueError(
                f"{len(references)} reference latents (ReferenceLatent); {label} takes at "
                f"most {config.max_references}"
            )
        refs = []
        for latent in references:
            if latent.dim() == 5:  # [B, C, 1, h, w], a video VAE's one frame
                latent = latent[:, :, 0]
            if latent.dim() != 4 or latent.shape[1] != config.in_channels:
                raise ValueError(
                    f"a reference latent of shape {tuple(latent.shape)} is not a "
                    f"{config.in_channels}-channel image latent (encode the image with the "
                    "Flux VAE, ae.safetensors)"
                )
            refs.append(to_batch(latent, batch, device, dtype))
        return Cond(to_batch(embeds, batch, device, dtype), {"references": refs}, None)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        batch = x.shape[0]
        timestep = (1 - t / 1000).expand(batch).to(x.dtype)
        refs = (cond.added or {}).get("references") or []
        out = self.call(x, timestep, cond.encoder_hidden_states, refs)
        return -out
