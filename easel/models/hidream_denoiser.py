"""The HiDream-I1 network adapter of the sampler loop, calling HiDreamImageTransformer2DModel as
diffusers' HiDreamImagePipeline does: latents [B, 16, h, w] as they are (the model patchifies
them itself), the scheduler's timestep (sigma * 1000), T5 embeddings, the Llama hidden states of
every layer, CLIP-L ++ CLIP-G pooled; the model's output negated (HiDream predicts image - noise,
the flow schedulers step with noise - image); both sides of the guidance in one batched call."""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch


class HiDreamNetwork:
    """Calls a HiDreamImageTransformer2DModel (`call`: the module, or it with LoRA patches)."""

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
        t5, llama, pooled = cond.get("t5"), cond.get("llama"), cond.get("pooled")
        if t5 is None or llama is None or pooled is None:
            raise ValueError(
                "HiDream needs T5 embeddings, Llama hidden states and CLIP-L + CLIP-G pooled "
                "embeddings: encode the prompt with a HiDream CLIP (QuadrupleTextEncoderLoader "
                "type hidream)"
            )
        t5_width, llama_width = (int(n) for n in config.caption_channels)
        if t5.shape[-1] != t5_width or llama.shape[-1] != llama_width:
            raise ValueError(
                f"text embeddings of widths {t5.shape[-1]} (T5) and {llama.shape[-1]} (Llama) "
                f"but this HiDream model takes {t5_width} and {llama_width}: was the CLIP made "
                "for another model?"
            )
        layers = max(config.llama_layers) + 1
        if llama.shape[0] < layers:
            raise ValueError(
                f"the Llama encoder gave {llama.shape[0]} layers; this HiDream model reads {layers}"
            )
        if pooled.shape[-1] != config.text_emb_dim:
            raise ValueError(
                f"the pooled text embedding has width {pooled.shape[-1]} but this HiDream "
                f"model expects {config.text_emb_dim} (CLIP-L's and CLIP-G's together)"
            )
        if cond.get("control"):
            raise ValueError("ControlNet conditioning is not supported for HiDream models")
        if cond.get("concat_latent_image") is not None and cond.get("concat_mask") is None:
            raise ValueError(
                "HiDream E1 editing (InstructPixToPixConditioning) is not supported: diffusers "
                "has no HiDream editing pipeline to hold Easel's implementation to"
            )
        llama = llama.to(device=device, dtype=dtype)
        if llama.shape[1] != batch:
            llama = llama.expand(llama.shape[0], batch, *llama.shape[2:])
        added = {"llama": llama, "pooled": to_batch(pooled, batch, device, dtype)}
        return Cond(to_batch(t5, batch, device, dtype), added, None)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        """Both sides in one call, as HiDreamImagePipeline batches them (uncond first)."""
        import torch

        if a.added is None or b.added is None:
            return None
        if a.encoder_hidden_states.shape != b.encoder_hidden_states.shape:
            return None
        return Cond(
            torch.cat([a.encoder_hidden_states, b.encoder_hidden_states]),
            {
                "llama": torch.cat([a.added["llama"], b.added["llama"]], dim=1),
                "pooled": torch.cat([a.added["pooled"], b.added["pooled"]]),
            },
            None,
        )

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        batch, _, height, width = x.shape
        patch = int(self.transformer.config.patch_size)
        if height % patch or width % patch:
            raise ValueError(
                f"HiDream takes {patch}x{patch} latent patches: the image's width and height "
                f"must be multiples of {8 * patch}"
            )
        assert cond.added is not None
        out = self.call(
            hidden_states=x,
            timesteps=t.expand(batch).to(x.device),
            encoder_hidden_states_t5=cond.encoder_hidden_states,
            encoder_hidden_states_llama3=cond.added["llama"],
            pooled_embeds=cond.added["pooled"],
            return_dict=False,
        )[0]
        return -out
