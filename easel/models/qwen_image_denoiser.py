"""The Qwen-Image network adapter of the sampler loop, as QwenImagePipeline and the Edit
pipelines call QwenImageTransformer2DModel: latents [B, 16, h, w] packed into 2x2 patches
(tokens of 64), `img_shapes` (frames, rows, columns of patches) for the rope, timesteps as
sigmas (t / 1000), Qwen2.5-VL's embeddings and their mask (only when it masks something, as the
pipelines pass it). Reference latents (the Edit encoders', or ReferenceLatent's) are packed
after the image's tokens with one more `img_shapes` entry each, and the prediction for the
image's tokens alone is kept. The loop keeps latents unpacked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from easel.models.conditioning import Cond, to_batch
from easel.models.flux_denoiser import pack, unpack

# ComfyUI's reference latent methods Qwen-Image follows (None: the default, by index)
REFERENCE_METHODS = (None, "index", "index_timestep_zero")


class QwenImageNetwork:
    """Calls a QwenImageTransformer2DModel (`call`: the module, or it with LoRA patches)."""

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
        config = self.transformer.config
        embeds = cond.get("embeds")
        if embeds is None or embeds.dim() != 3:
            raise ValueError(
                "Qwen-Image needs Qwen2.5-VL embeddings: encode the prompt with a Qwen CLIP "
                "(TextEncoderLoader type qwen_image)"
            )
        if embeds.shape[-1] != config.joint_attention_dim:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this Qwen-Image model "
                f"expects {config.joint_attention_dim} (Qwen2.5-VL's): was the CLIP made for "
                "another model?"
            )
        controls = list(cond.get("control") or [])
        if controls:
            from easel.models.qwen_instantx_controlnet import QwenControl

            if not all(isinstance(c, QwenControl) for c in controls):
                raise ValueError(
                    "this ControlNet is not a Qwen-Image ControlNet (Easel applies InstantX's "
                    "Qwen-Image ControlNets to Qwen-Image models)"
                )
        method = cond.get("reference_latents_method")
        if method not in REFERENCE_METHODS:
            raise ValueError(
                f"reference latent method {method!r}: Qwen-Image places reference latents by "
                f"index ({', '.join(m for m in REFERENCE_METHODS if m)})"
            )
        mask = cond.get("attention_mask")
        added: dict[str, Any] = {
            "mask": None,
            "reference": None,
            "zero_cond_t": method == "index_timestep_zero",
            "control": controls,
        }
        if mask is not None and not bool(mask.all()):
            added["mask"] = to_batch(mask.float(), batch, device, dtype)
        if cond.get("reference_latents"):
            added["reference"] = self.reference_tokens(
                cond["reference_latents"], batch, device, dtype
            )
        return Cond(to_batch(embeds, batch, device, dtype), added, None)

    def reference_tokens(
        self, latents: list[Any], batch: int, device: Any, dtype: Any
    ) -> tuple[Any, list[tuple[int, int, int]]]:
        """The reference latents packed (in order, as the Edit pipelines concatenate them)
        and their `img_shapes` entries."""
        import torch

        tokens, shapes = [], []
        for latent in latents:
            if latent.dim() == 5:  # [B, C, 1, h, w], a video VAE's one frame
                latent = latent[:, :, 0]
            h, w = int(latent.shape[-2]), int(latent.shape[-1])
            if h % self.patch or w % self.patch:  # padded to whole patches, as ComfyUI does
                pad_h, pad_w = -h % self.patch, -w % self.patch
                latent = torch.nn.functional.pad(latent, (0, pad_w, 0, pad_h), mode="circular")
                h, w = h + pad_h, w + pad_w
            packed = pack(latent.to(device=device, dtype=dtype), self.patch)
            tokens.append(to_batch(packed, batch, device, dtype))
            shapes.append((1, h // self.patch, w // self.patch))
        return torch.cat(tokens, dim=1), shapes

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call, as the pipelines' true CFG does

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        import torch

        batch, _, height, width = x.shape
        if height % self.patch or width % self.patch:
            raise ValueError(
                f"Qwen-Image packs latents in {self.patch}x{self.patch} patches: the image's "
                f"width and height must be multiples of {8 * self.patch}"
            )
        tokens = pack(x, self.patch)
        count = tokens.shape[1]
        shapes = [(1, height // self.patch, width // self.patch)]
        added = cond.added or {}
        if added.get("reference") is not None:
            ref_tokens, ref_shapes = added["reference"]
            tokens = torch.cat([tokens, ref_tokens.to(tokens.dtype)], dim=1)
            shapes = [*shapes, *ref_shapes]
        zero_cond = bool(added.get("zero_cond_t")) and added.get("reference") is not None
        extra: dict[str, Any] = {}
        if added.get("control"):  # InstantX ControlNets: on the image's tokens alone
            from easel.models.qwen_instantx_controlnet import block_residuals

            samples = block_residuals(
                added["control"],
                tokens[:, :count],
                t,
                cond.encoder_hidden_states,
                added.get("mask"),
                [shapes[:1]] * batch,
                (height, width),
            )
            rest = tokens.shape[1] - count  # reference tokens: no residual
            if samples and rest:
                samples = [torch.nn.functional.pad(s, (0, 0, 0, rest)) for s in samples]
            extra["controlnet_block_samples"] = samples
        with timestep_zero_references(self.transformer, zero_cond):
            out = self.call(
                hidden_states=tokens,
                timestep=t.expand(batch).to(x.dtype) / 1000,
                encoder_hidden_states=cond.encoder_hidden_states,
                encoder_hidden_states_mask=added.get("mask"),
                img_shapes=[shapes] * batch,
                return_dict=False,
                **extra,
            )[0]
        return unpack(out[:, :count], height, width, self.patch)


@contextmanager
def timestep_zero_references(transformer: Any, enabled: bool) -> Iterator[None]:
    """While `enabled`, the transformer modulates reference tokens with the timestep 0, as
    diffusers' `zero_cond_t` (Qwen-Image-Edit-2511's config) does and ComfyUI's
    "index_timestep_zero" reference method asks; the flag is the model's and its blocks'
    (read at call time, no weights involved), set back afterwards."""
    if not enabled or getattr(transformer, "zero_cond_t", True):
        yield
        return
    modules = [transformer, *transformer.transformer_blocks]
    for module in modules:
        module.zero_cond_t = True
    try:
        yield
    finally:
        for module in modules:
            module.zero_cond_t = False
