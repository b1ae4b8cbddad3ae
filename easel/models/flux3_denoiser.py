"""The Flux 3 network adapter of the sampler loop, calling Flux3Transformer2DModel as diffusers'
Flux3LoopDenoiser / Flux3DistilledLoopDenoiser do: latents [B, 128, h, w] (patchified by the
VAE handle) flattened into one token per latent pixel, position ids (t, h, w, l) with the
image's h and w scaled by 0.5, text ids along l, the timestep as a sigma (t / 1000), and
reference images (ReferenceLatent, ReferenceMultiLatent) as their own token mode with l = -1,
-2, .... The step-distilled model (a flow map) also gets the level the step jumps to: the
scheduler's next one, 0 after the last. The loop keeps latents [B, C, h, w], so
schedulers, masks and previews see the usual layout."""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond, to_batch
from easel.models.families.flux3 import IMAGE_ROPE_SCALE

# ComfyUI's FluxKontextMultiReferenceLatentMethod names; Flux 3 tells references apart by index.
REFERENCE_METHODS = ("index",)


def pack(latents: Any) -> Any:
    """[B, C, h, w] -> [B, h*w, C] (Flux3PrepareLatentsStep's packing)."""
    return latents.flatten(2).transpose(1, 2)


def unpack(tokens: Any, height: int, width: int) -> Any:
    """[B, h*w, C] -> [B, C, h, w] (Flux3UnpackLatentsStep)."""
    b, _, c = tokens.shape
    return tokens.transpose(1, 2).reshape(b, c, height, width)


def image_ids(height: int, width: int, level: int, device: Any) -> Any:
    """(0, row * 0.5, column * 0.5, level) of each token of an h x w latent (diffusers'
    _prepare_image_ids): level 0 for the image made, -1, -2, ... for references."""
    import torch

    ids = torch.cartesian_prod(
        torch.arange(1), torch.arange(height), torch.arange(width), torch.tensor([level])
    ).to(torch.float32)
    ids[:, 1:3] = ids[:, 1:3] * IMAGE_ROPE_SCALE
    return ids.to(device)


def text_ids(length: int, device: Any) -> Any:
    """(0, 0, 0, position) of each text token (Flux3TextRoPEInputsStep)."""
    import torch

    ids = torch.zeros(length, 4)
    ids[:, 3] = torch.arange(length)
    return ids.to(device)


class Flux3Network:
    """Calls a Flux3Transformer2DModel (`call`: the module, or it with LoRA patches bound).
    `schedule` is the sampler's scheduler (easel.models.sampling.denoise sets it): its
    `timesteps` and `sigmas` say which level each step goes to."""

    def __init__(self, transformer: Any, call: Any, family: Any) -> None:
        self.transformer, self.call, self.family = transformer, call, family
        self.step, self.total = 0, 0
        self.schedule: Any = None

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
        if embeds is None:
            raise ValueError(
                f"{self.family.label} needs Qwen3-VL's hidden states: encode the prompt with "
                "a Flux 3 CLIP (TextEncoderLoader type flux3)"
            )
        if embeds.shape[-1] != config.joint_attention_dim:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this {self.family.label} "
                f"model expects {config.joint_attention_dim} (eight hidden layers of Qwen3-VL): "
                "was the CLIP made for another model?"
            )
        if cond.get("control"):
            raise ValueError(f"ControlNet conditioning is not supported for {self.family.label}")
        added: dict[str, Any] = {}
        if cond.get("reference_latents"):
            method = str(cond.get("reference_latents_method", "index"))
            if method not in REFERENCE_METHODS:
                raise ValueError(
                    f"reference latent method {method!r} is not one {self.family.label} "
                    f"takes here (Easel has: {', '.join(REFERENCE_METHODS)})"
                )
            added["reference"] = self.reference_tokens(
                cond["reference_latents"], batch, device, dtype
            )
        return Cond(to_batch(embeds, batch, device, dtype), added, None)

    def reference_tokens(
        self, latents: list[Any], batch: int, device: Any, dtype: Any
    ) -> tuple[Any, Any]:
        """Reference images: each latent's tokens, one after the other, with l = -1, -2, ...
        (Flux3PrepareImageCondLatentsStep). A reference of one image serves every image of the
        batch; one of the batch's size, one each."""
        import torch

        channels = int(self.transformer.config.cond_in_channels)
        tokens, ids = [], []
        for index, latent in enumerate(latents):
            if latent.dim() != 4 or latent.shape[1] != channels:
                raise ValueError(
                    f"a reference latent has shape {tuple(latent.shape)}, {self.family.label} "
                    f"takes [B, {channels}, h, w]: encode the image with the Flux.2 VAE"
                )
            h, w = int(latent.shape[-2]), int(latent.shape[-1])
            tokens.append(to_batch(pack(latent), batch, device, dtype))
            ids.append(image_ids(h, w, -(1 + index), device))
        return torch.cat(tokens, dim=1), torch.cat(ids)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call (their text lengths differ), as the pipeline

    def target(self, t: Any) -> Any:
        """The noise level this step goes to (a flow map's second input): the scheduler's level
        after `t`'s, as Flux3DistilledLoopDenoiser takes the next timestep (0 after the last).
        Read off the scheduler's own levels, so a window that stops early, image-to-image and
        explicit sigmas (SplitSigmas' high part ends above 0) get the level they step to."""
        import torch

        schedule = self.schedule
        levels = getattr(schedule, "sigmas", None)
        steps = getattr(schedule, "timesteps", None)
        if levels is None or steps is None or len(steps) == 0:
            raise ValueError(f"{self.family.label} needs the sampler's noise levels")
        index = int(torch.argmin((steps.to(t.device).float() - t.float()).abs()))
        following = float(levels[index + 1]) if index + 1 < len(levels) else 0.0
        return torch.full_like(t, following, dtype=torch.float32)

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        batch, _, height, width = x.shape
        hidden = cond.encoder_hidden_states
        added = cond.added or {}
        kwargs: dict[str, Any] = {
            "hidden_states": pack(x),
            "encoder_hidden_states": hidden,
            "timestep": (t / 1000).expand(batch).to(x.dtype),
            "img_ids": image_ids(height, width, 0, x.device),
            "txt_ids": text_ids(hidden.shape[1], x.device),
            "return_dict": False,
        }
        if added.get("reference") is not None:
            ref_tokens, ref_ids = added["reference"]
            kwargs["image_cond_hidden_states"] = ref_tokens.to(x.dtype)
            kwargs["image_cond_ids"] = ref_ids
        if self.transformer.config.flow_map:
            kwargs["target_timestep"] = self.target(t).expand(batch).to(x.dtype)
        out = self.call(**kwargs)[0]
        return unpack(out, height, width)
