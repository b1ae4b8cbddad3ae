"""The JoyImage Edit network adapter of the sampler loop, calling
JoyImageEditTransformer3DModel as JoyImageEditPipeline does: the reference latents (the edited
image's, from TextEncodeJoyImageEdit) and the latent being made stacked as items
[B, n, 16, 1, h, w], references first and the latent last (the transformer takes them as frames,
the latent at frame 0); the scheduler's timesteps as they are (sigma * 1000); Qwen3-VL's
embeddings. The prediction for the last item is the latent's. Each guidance side is its own
call, as the pipeline makes them.

The pipeline's CFG rescales the guided prediction to the conditional one's norm; KSampler's CFG
is plain, and ComfyUI's template adds CFGNorm for that (easel.models.guidance)."""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch


class JoyImageNetwork:
    """Calls a JoyImageEditTransformer3DModel (`call`: the module, or it with LoRA patches)."""

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
        embeds = cond.get("embeds")
        if embeds is None or embeds.dim() != 3:
            raise ValueError(
                "JoyImage Edit needs Qwen3-VL embeddings: encode the prompt with "
                "TextEncodeJoyImageEdit and a CLIP of TextEncoderLoader type joyimage"
            )
        width = int(self.transformer.config.text_dim)
        if embeds.shape[-1] != width:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this JoyImage model "
                f"expects {width} (Qwen3-VL's): was the CLIP made for another model?"
            )
        if cond.get("control"):
            raise ValueError("ControlNet conditioning is not supported for JoyImage models")
        references = [
            to_batch(latent[:, :, 0] if latent.dim() == 5 else latent, batch, device, dtype)
            for latent in cond.get("reference_latents") or []
        ]
        return Cond(to_batch(embeds, batch, device, dtype), {"reference": references}, None)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call, as JoyImageEditPipeline's CFG does

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        import torch

        batch, _, height, width = x.shape
        patch = self.transformer.config.patch_size
        if height % patch[1] or width % patch[2]:
            raise ValueError(
                f"JoyImage patches latents {patch[1]}x{patch[2]}: the image's width and height "
                f"must be multiples of {8 * patch[1]}"
            )
        references = (cond.added or {}).get("reference", [])
        for latent in references:
            if tuple(latent.shape[-2:]) != (height, width):
                raise ValueError(
                    f"a reference latent of {latent.shape[-2]}x{latent.shape[-1]} beside a "
                    f"latent of {height}x{width}: JoyImage Edit takes references of the image's "
                    "own size (make the latent from the reference image's size)"
                )
        items = torch.stack([*(r.to(x.dtype) for r in references), x], dim=1).unsqueeze(3)
        out = self.call(
            hidden_states=items,
            timestep=t.expand(batch).to(x.dtype),
            encoder_hidden_states=cond.encoder_hidden_states,
            return_dict=False,
        )[0]
        return out[:, -1, :, 0]
