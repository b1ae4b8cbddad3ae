"""The HunyuanVideo 1.5 network adapter of the sampler loop, calling
HunyuanVideo15Transformer3DModel as HunyuanVideo15Pipeline (and its image-to-video twin) does:

- the latent [B, 32, h, w] as one frame, with the conditioning image's latent and its mask
  (HunyuanVideo15ImageToVideo; zeros for text-to-image) concatenated on the channels:
  [B, 65, 1, h, w];
- the scheduler's timesteps as they are (sigma * 1000);
- Qwen2.5-VL's embeddings and byT5's glyph embeddings, every token real (easel.models.
  hunyuan15_text drops the pipeline's padding, which the transformer gives no weight);
- SigLIP's image tokens (CLIPVisionEncode) for image-to-video, else one zero token, which the
  transformer reads as "no image" and masks out (the pipeline's 729 zero tokens, likewise
  masked).

Each guidance side is its own call (the prompts have their own lengths), as the pipeline's
guider makes them."""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch


class Hunyuan15Network:
    """Calls a HunyuanVideo15Transformer3DModel (`call`: the module, or it with LoRA patches)."""

    def __init__(self, transformer: Any, call: Any, family: Any) -> None:
        self.transformer, self.call, self.family = transformer, call, family
        self.step, self.total = 0, 0

    def _check_width(self, value: Any, width: int, what: str) -> None:
        if value.shape[-1] != width:
            raise ValueError(
                f"{what} have width {value.shape[-1]} but this HunyuanVideo 1.5 model expects "
                f"{width}: was the conditioning made for another model?"
            )

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
        embeds, glyphs = cond.get("embeds"), cond.get("byt5_embeds")
        if embeds is None or glyphs is None or embeds.dim() != 3:
            raise ValueError(
                "HunyuanVideo 1.5 needs Qwen2.5-VL and byT5 embeddings: encode the prompt with "
                "a CLIP of DualTextEncoderLoader type hunyuan_video_15"
            )
        self._check_width(embeds, int(config.text_embed_dim), "text embeddings (Qwen2.5-VL's)")
        self._check_width(glyphs, int(config.text_embed_2_dim), "glyph embeddings (byT5's)")
        if cond.get("control"):
            raise ValueError("ControlNet conditioning is not supported for HunyuanVideo 1.5")
        if cond.get("reference_latents"):
            raise ValueError(
                "reference latents are not supported for HunyuanVideo 1.5: give the image to "
                "HunyuanVideo15ImageToVideo"
            )
        image = cond.get("image_embeds")
        if image is None:
            image = torch.zeros(1, 1, int(config.image_embed_dim))
        self._check_width(image, int(config.image_embed_dim), "image embeddings (SigLIP's)")
        added = {
            "glyphs": to_batch(glyphs, batch, device, dtype),
            "image": to_batch(image, batch, device, dtype),
        }
        concat = cond.get("concat_latent")
        if concat is not None:
            added["concat"] = to_batch(concat, batch, device, dtype)
        return Cond(to_batch(embeds, batch, device, dtype), added, None)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call, as the pipeline's guider does

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        import torch

        batch, channels, height, width = x.shape
        added = cond.added or {}
        concat = added.get("concat")
        if concat is None:
            concat = x.new_zeros(batch, channels + 1, height, width)
        elif tuple(concat.shape[-2:]) != (height, width):
            raise ValueError(
                f"the conditioning image's latent is {concat.shape[-1]}x{concat.shape[-2]} and "
                f"the latent {width}x{height}: give HunyuanVideo15ImageToVideo's latent to the "
                "sampler"
            )
        hidden = torch.cat([x, concat.to(x.dtype)], dim=1).unsqueeze(2)
        text, glyphs = cond.encoder_hidden_states, added["glyphs"]
        ones = torch.ones(batch, text.shape[1], dtype=torch.long, device=x.device)
        glyph_mask = torch.ones(batch, glyphs.shape[1], dtype=torch.long, device=x.device)
        out = self.call(
            hidden_states=hidden,
            timestep=t.expand(batch).to(x.dtype),
            encoder_hidden_states=text,
            encoder_attention_mask=ones,
            encoder_hidden_states_2=glyphs,
            encoder_attention_mask_2=glyph_mask,
            image_embeds=added["image"],
            return_dict=False,
        )[0]
        return out[:, :, 0]
