"""Handles that nodes pass along MODEL, CLIP, VAE, PRIOR and UPSCALE_MODEL links.

A handle points at modules owned by the model manager: it is never copied, and the output
cache counts it as zero bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from easel.core.cache import sizeof


@dataclass(eq=False)
class ModelHandle:
    """A denoising UNet with its scheduler config and model family.

    `patches` are LoRA patches applied at call time (never written into the shared `unet`):
    `forward()` is what a sampler calls instead of `unet`. `sampling` overrides the family's
    model sampling (e.g. `{"prediction_type": "v_prediction"}` from ModelSamplingDiscrete).
    """

    name: str
    unet: Any
    scheduler_config: dict[str, Any]
    vae_scale_factor: int
    manager: Any
    vae: Any = None  # the checkpoint's VAE, used to fit the cheap latent preview
    preview_matrix: Any = field(default=None, repr=False)
    family: Any = None  # easel.models.families.Family (None: told from the UNet config)
    patches: tuple[Any, ...] = ()  # ((easel.models.lora.LoraWeights, strength), ...)
    sampling: dict[str, Any] = field(default_factory=dict)
    # post-CFG patches on the denoised estimate (CFGNorm): easel.models.guidance.Guidance
    post_cfg: tuple[Any, ...] = ()
    # Differential diffusion's strength (DifferentialDiffusion): None for a plain noise mask
    differential: float | None = None
    # Model patches applied to the call (QwenImageDiffsynthControlnet): each has
    # `wrap(unet, call) -> call`; easel.models.model_patches
    model_patches: tuple[Any, ...] = ()
    # diffusers' attention backend the network runs under (ModelAttentionBackend): an
    # AttentionBackendName value ("native", "sage", ...), None for diffusers' default
    attention: str | None = None

    @property
    def latent_channels(self) -> int:
        """Channels of the latent the sampler starts from (4 for a 9-channel inpainting UNet)."""
        if self.family is not None and self.family.latent.channels:
            return int(self.family.latent.channels)
        return int(self.unet.config.in_channels)

    def with_patches(self, patches: tuple[Any, ...]) -> ModelHandle:
        """A handle on the same UNet with more LoRA patches (the base weights are shared)."""
        return replace(self, patches=self.patches + tuple(patches))

    def with_sampling(self, **overrides: Any) -> ModelHandle:
        """A handle on the same UNet with model-sampling overrides."""
        return replace(self, sampling={**self.sampling, **overrides})

    def with_post_cfg(self, patch: Any) -> ModelHandle:
        """A handle on the same UNet with one more post-CFG patch."""
        return replace(self, post_cfg=(*self.post_cfg, patch))

    def with_model_patch(self, patch: Any) -> ModelHandle:
        """A handle on the same UNet with one more model patch (a ControlNet patch)."""
        return replace(self, model_patches=(*self.model_patches, patch))

    def with_attention(self, backend: str) -> ModelHandle:
        """A handle on the same UNet whose calls run under diffusers' attention `backend`."""
        return replace(self, attention=backend)

    def forward(self) -> Any:
        """The callable a sampler uses in place of `unet` (LoRA patches bound, if any; model
        patches wrapped around it, the first applied innermost; all of it inside diffusers'
        `attention_backend(attention)` when one is set, restored after each call)."""
        call = self.unet
        if self.patches:
            from easel.models.lora import bind

            call = bind(self.unet, "unet", self.patches)
        for patch in self.model_patches:
            call = patch.wrap(self.unet, call)
        if self.attention is not None:
            call = _under_attention_backend(call, self.attention)
        return call


def _under_attention_backend(call: Any, backend: str) -> Any:
    """`call` run inside diffusers' attention_backend(backend) context (the dispatcher's
    active backend, which transformers calling dispatch_attention_fn read)."""
    from diffusers.models.attention_dispatch import attention_backend

    def run(*args: Any, **kwargs: Any) -> Any:
        with attention_backend(backend):
            return call(*args, **kwargs)

    return run


@dataclass(eq=False)
class TextEncoderPart:
    """One CLIP text tower of a checkpoint: SD1/SD2 have one, SDXL base two ("l" and "g"),
    the SDXL refiner one ("g").

    `layer` picks the hidden state used: -1 the last layer, -2 the penultimate (CLIP skip)...;
    `layer_norm` says whether the final layer norm is applied to an intermediate layer's output
    (SD1/SD2: yes; SDXL: no). `pooled` marks the part whose projected pooled output is the
    conditioning's pooled embedding (SDXL's "g").
    """

    key: str
    tokenizer: Any
    model: Any  # transformers CLIPTextModel or CLIPTextModelWithProjection
    layer: int = -1
    layer_norm: bool = True
    pooled: bool = False
    text_projection: Any = None  # for a CLIPModel's text tower (pooled -> projected)
    kind: str = "clip"  # "clip" or "t5" (a T5 encoder: easel.models.t5_text encodes it)


@dataclass(eq=False)
class ClipHandle:
    """The text encoders of a checkpoint (`parts`), or a full CLIP model (`vision` set, for
    CLIPScore and unCLIP priors). `patches` are LoRA patches for the text encoders, applied at
    call time; `family` is the checkpoint's model family (None for a bare CLIP model)."""

    name: str
    parts: tuple[TextEncoderPart, ...]
    manager: Any
    family: Any = None
    patches: tuple[Any, ...] = ()
    vision: Any = None  # a transformers CLIPModel (both towers) for CLIPScore
    image_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    image_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    empty_cache: dict[str, Any] = field(default_factory=dict, repr=False)
    # T5TokenizerOptions: min_padding / min_length of T5 prompts (Chroma honours them)
    tokenizer_options: dict[str, Any] = field(default_factory=dict)

    # The first part, for code that handles one tower (CLIPScore, priors).
    @property
    def tokenizer(self) -> Any:
        return self.parts[0].tokenizer

    @property
    def text_model(self) -> Any:
        return self.parts[0].model

    @property
    def text_projection(self) -> Any:
        return self.parts[0].text_projection

    def with_patches(self, patches: tuple[Any, ...]) -> ClipHandle:
        """A handle on the same encoders with more LoRA patches (own empty-prompt cache)."""
        return replace(self, patches=self.patches + tuple(patches), empty_cache={})

    def with_layer(self, layer: int) -> ClipHandle:
        """A handle whose parts use hidden layer `layer` (-1 last, -2 penultimate, ...)."""
        parts = tuple(replace(part, layer=layer) for part in self.parts)
        return replace(self, parts=parts, empty_cache={})

    def forward(self, part: TextEncoderPart) -> Any:
        """The callable to run `part.model` with (LoRA patches bound, if any)."""
        if not self.patches:
            return part.model
        from easel.models.lora import bind

        return bind(part.model, f"text_encoder:{part.key}", self.patches)


@dataclass(eq=False)
class VaeHandle:
    """An autoencoder (AutoencoderKL or VQModel) and its latent scaling. A `standalone` VAE
    (VAELoader) decodes latents with the scaling they carry (their model family's)."""

    name: str
    vae: Any
    manager: Any
    standalone: bool = False

    @property
    def scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def scaling_factor(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", None) or 1.0)

    @property
    def shift_factor(self) -> float:
        return float(getattr(self.vae.config, "shift_factor", None) or 0.0)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)


@dataclass(eq=False)
class PriorHandle:
    """An unCLIP prior (diffusers PriorTransformer) and its scheduler config."""

    name: str
    prior: Any
    scheduler_class: str
    scheduler_config: dict[str, Any]
    manager: Any


@dataclass(eq=False)
class UpscalerHandle:
    """A pixel-space diffusion super-resolution UNet2DModel that takes the upsampled low-res
    image concatenated to its noisy input."""

    name: str
    unet: Any
    scheduler_class: str
    scheduler_config: dict[str, Any]
    factor: int
    manager: Any
    upsample: str = "bicubic"
    info: dict[str, Any] = field(default_factory=dict)


HANDLE_TYPES = (ModelHandle, ClipHandle, VaeHandle, PriorHandle, UpscalerHandle)

for _handle in HANDLE_TYPES:
    sizeof.register(_handle)(lambda value: 0)
