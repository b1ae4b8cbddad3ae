"""The denoising loop: a diffusers scheduler driving a UNet with classifier-free guidance.

Like k-diffusion's samplers, `denoise` is one function of (model, noise, schedule, guidance)
with a per-step callback, testable without any node or server around it. Family differences are
data it is handed: SDXL's added conditioning (`conditioning.py`), an inpainting UNet's extra
input channels and a noise mask (`Inpaint`), a window of the schedule (`Window`,
KSamplerAdvanced), ControlNet residuals (easel.models.controlnet). The network itself is called
through an adapter its family names (`network_for`): a UNet for the Stable Diffusion families,
a Flux transformer on packed latents for Flux (easel.models.flux_denoiser). Flow-matching
families get their sigmas from `FlowSchedule` (shift, or FluxPipeline's resolution-dependent mu).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from easel.models.conditioning import Cond, stack, unet_condition

StepCallback = Callable[[int, int, Any], None]


# Samplers diffusers has no scheduler for, by class name ("module:Class").
EASEL_SCHEDULERS = {
    "FlowResMultistepScheduler": "easel.models.flow_samplers:FlowResMultistepScheduler",
    "FlowEulerAncestralScheduler": "easel.models.flow_samplers:FlowEulerAncestralScheduler",
    "FlowERSDEScheduler": "easel.models.flow_samplers:FlowERSDEScheduler",
}


# ModelHandle.sampling entries that are no scheduler's config: a flow shift's mu, and the
# model-sampling kind (easel.models.marigold_sampling: ModelSamplingAuraFlow's `sampling`)
NOT_CONFIG = frozenset({"mu", "sampling_kind"})


def make_scheduler(class_name: str, options: dict[str, Any], base_config: dict[str, Any]) -> Any:
    """`class_name.from_config(model's scheduler config, **options)` (configuration is data)."""
    import importlib

    import diffusers

    if class_name in EASEL_SCHEDULERS:
        module_name, _, name = EASEL_SCHEDULERS[class_name].partition(":")
        cls = getattr(importlib.import_module(module_name), name)
    else:
        cls = getattr(diffusers, class_name)
    config = {k: v for k, v in base_config.items() if not k.startswith("_") and k not in NOT_CONFIG}
    return cls.from_config(config, **options)


@dataclass(frozen=True)
class FlowSchedule:
    """How a flow-matching scheduler sets its sigmas: `linear` gives it FluxPipeline's (and
    ComfyUI's "simple") linspace(1, 1/n, n) before the shift, else the scheduler makes its own;
    `mu` is the exponent of a resolution-dependent (dynamic) shift, for schedulers configured
    with `use_dynamic_shifting`."""

    linear: bool = False
    mu: float | None = None


def flow_mu(config: dict[str, Any], image_seq_len: int) -> float:
    """FluxPipeline's `calculate_shift`: mu grows linearly with the number of image tokens."""
    base_len = float(config.get("base_image_seq_len", 256))
    max_len = float(config.get("max_image_seq_len", 4096))
    base_shift = float(config.get("base_shift", 0.5))
    max_shift = float(config.get("max_shift", 1.15))
    slope = (max_shift - base_shift) / (max_len - base_len)
    return image_seq_len * slope + base_shift - slope * base_len


def flow_config(
    config: dict[str, Any], class_name: str, linear: bool, image_seq_len: int
) -> tuple[dict[str, Any], FlowSchedule]:
    """A flow family's scheduler config and sigmas for `class_name`. The shift is the
    config's: fixed (`shift`), a `mu` set by ModelSamplingFlux, or resolution-dependent
    (`use_dynamic_shifting`: FluxPipeline's mu for `image_seq_len` tokens). A scheduler other
    than FlowMatchEuler gets the equal fixed shift exp(mu) (the exponential time shift at
    mu is the linear one at shift e^mu)."""
    import math

    mu: float | None = None
    if config.get("mu") is not None:
        mu = float(config["mu"])
    elif config.get("use_dynamic_shifting"):
        mu = flow_mu(config, image_seq_len)
    if class_name == "FlowMatchEulerDiscreteScheduler":
        if mu is not None:
            return {**config, "use_dynamic_shifting": True}, FlowSchedule(linear, mu)
        return config, FlowSchedule(linear, None)
    shift = math.exp(mu) if mu is not None else float(config.get("shift", 1.0))
    return (
        {**config, "shift": shift, "flow_shift": shift, "use_dynamic_shifting": False},
        FlowSchedule(linear, None),
    )


def set_timesteps(scheduler: Any, steps: int, device: Any, flow: FlowSchedule | None) -> None:
    """`scheduler.set_timesteps`, with the flow sigmas and mu where the scheduler takes them."""
    if flow is None:
        scheduler.set_timesteps(steps, device=device)
        return
    import inspect

    import numpy as np

    params = inspect.signature(scheduler.set_timesteps).parameters
    kwargs: dict[str, Any] = {}
    if (
        flow.linear
        and "sigmas" in params
        and not getattr(scheduler.config, "use_flow_sigmas", False)
    ):
        kwargs["sigmas"] = np.linspace(1.0, 1 / steps, steps)
    if "mu" in params and getattr(scheduler.config, "use_dynamic_shifting", False):
        kwargs["mu"] = flow.mu
    scheduler.set_timesteps(steps, device=device, **kwargs)


def scale_input(scheduler: Any, x: Any, t: Any, network: Any = None) -> Any:
    """The scheduler's input scaling (flow-matching schedulers have none; a network adapter
    with `unscaled_input` takes the sample as it is: Lotus, ComfyUI's IMG_TO_IMG)."""
    scale = getattr(scheduler, "scale_model_input", None)
    if scale is None:
        return x
    scaled = scale(x, t)  # also the scheduler's own step bookkeeping
    return x if getattr(network, "unscaled_input", False) else scaled


def add_noise(scheduler: Any, x: Any, noise: Any, t: Any) -> Any:
    """`x` noised to timesteps `t`: add_noise, or a flow scheduler's scale_noise."""
    if hasattr(scheduler, "add_noise"):
        return scheduler.add_noise(x, noise, t)
    return scheduler.scale_noise(x, t, noise)


# A family's `network` -> the adapter class ("module:Class") `denoise` calls it through. An
# adapter has `condition(cond, batch, device, dtype, *, pixel_size, negative) -> Cond`,
# `stack(a, b) -> Cond | None` (one batched call for both CFG sides, or None), `__call__(x, t,
# cond)` -> the prediction in the latent's layout, and `step` / `total` attributes.
NETWORKS: dict[str, str] = {
    "unet": "easel.models.sampling:UNetNetwork",
    "flux": "easel.models.flux_denoiser:FluxNetwork",
    "flux2": "easel.models.flux2_denoiser:Flux2Network",
    "flux3": "easel.models.flux3_denoiser:Flux3Network",
    "qwen_image": "easel.models.qwen_image_denoiser:QwenImageNetwork",
    "qwen_image21": "easel.models.qwen21_denoiser:QwenImage21Network",
    "sd3": "easel.models.sd3_denoiser:SD3Network",
    "z-image": "easel.models.lumina_denoiser:ZImageNetwork",
    "lumina2": "easel.models.lumina_denoiser:Lumina2Network",
    "hidream": "easel.models.hidream_denoiser:HiDreamNetwork",
    "chroma": "easel.models.chroma_denoiser:ChromaNetwork",
    "krea2": "easel.models.krea2_denoiser:Krea2Network",
    "ideogram4": "easel.models.ideogram4_denoiser:Ideogram4Network",
    "ernie-image": "easel.models.ernie_denoiser:ErnieImageNetwork",
    "longcat": "easel.models.longcat_denoiser:LongCatNetwork",
    "ovis": "easel.models.ovis_denoiser:OvisNetwork",
    "qwen_image_layered": "easel.models.qwen_layered_denoiser:QwenLayeredNetwork",
    "lotus": "easel.models.lotus_denoiser:LotusNetwork",
    "kandinsky5": "easel.models.kandinsky5_denoiser:Kandinsky5Network",
    "joyimage": "easel.models.joyimage_denoiser:JoyImageNetwork",
    "omnigen2": "easel.models.omnigen2_denoiser:OmniGen2Network",
    "boogu": "easel.models.omnigen2_denoiser:OmniGen2Network",  # the same inputs
    "fibo2": "easel.models.fibo2_denoiser:Fibo2Network",
    "minimax-h3": "easel.models.minimax_denoiser:MiniMaxH3Network",
    "mage_flow": "easel.models.mage_denoiser:MageFlowNetwork",
    "wan": "easel.models.wan_denoiser:WanNetwork",
    "hunyuan15": "easel.models.hunyuan15_denoiser:Hunyuan15Network",
    "anima": "easel.models.anima_denoiser:AnimaNetwork",
}


def network_for(unet: Any, family: Any, call: Any) -> Any:
    """The adapter `denoise` calls the network through, as the family says (`network`)."""
    import importlib

    kind = getattr(family, "network", "unet")
    target = NETWORKS.get(kind)
    if target is None:
        raise ValueError(f"no network adapter {kind!r} for the {family.label} family")
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)(unet, call, family)


@dataclass(frozen=True)
class Window:
    """Which steps of a `steps`-step schedule to run (KSamplerAdvanced): [start, end), whether
    to add noise to the input latent first, and whether to stop with the noise left in (else
    the last step denoises fully, as ComfyUI does when it ends early)."""

    start: int = 0
    end: int | None = None
    add_noise: bool = True
    leftover_noise: bool = False


@dataclass
class Inpaint:
    """Inpainting inputs. `mask` [B,1,h,w] at latent size, 1 where to paint. With `concat`
    (an inpainting UNet's mask + masked-image latent channels) the UNet sees them; with
    `blend` the latents outside the mask are reset to the source latent (noised to the current
    step) after every step, as diffusers' inpainting pipeline does for ordinary UNets."""

    mask: Any
    source: Any  # the source latents (scaled), blended back outside the mask
    concat: Any = None  # [B, 1 + C, h, w]: mask then masked-image latents
    blend: bool = True
    differential: float | None = None  # differential diffusion's strength (0..1), or None


def timesteps_for(
    scheduler: Any,
    steps: int,
    denoise: float,
    device: Any,
    window: Window | None = None,
    flow: FlowSchedule | None = None,
) -> tuple[Any, int]:
    """Timesteps to run and the index they start at: `steps` steps of a schedule of
    `steps / denoise` (so image-to-image runs the number of steps asked for), or the window's
    steps of a `steps`-step schedule."""
    if window is not None:
        set_timesteps(scheduler, steps, device, flow)
        order = scheduler.order
        end = steps if window.end is None else min(window.end, steps)
        start = window.start * order
        if start and hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
        if end < steps and not window.leftover_noise:
            sigmas = getattr(scheduler, "sigmas", None)
            if sigmas is not None and len(sigmas) > end * order:
                sigmas[end * order] = 0.0  # the last step goes to sigma 0 (ComfyUI's way)
        return scheduler.timesteps[start : end * order], start
    total = steps if denoise >= 1.0 else max(steps, int(steps / denoise))
    set_timesteps(scheduler, total, device, flow)
    start = (total - steps) * scheduler.order
    if start and hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    elif flow is not None and hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(0)  # as FluxPipeline does
    return scheduler.timesteps[start:], start


def initial_latents(
    scheduler: Any,
    noise: Any,
    timesteps: Any,
    *,
    init_latents: Any,
    denoise_strength: float,
    window: Window | None,
) -> Any:
    """The latents the loop starts from: pure noise for a full denoise, the input latent noised
    to the first step for image-to-image and windows, or the input latent as it is."""
    batch = noise.shape[0]
    sigma = getattr(scheduler, "init_noise_sigma", None) or 1.0  # flow schedulers: 1
    if window is not None and init_latents is not None:
        if not window.add_noise:
            return init_latents
        if window.start == 0:
            if not hasattr(scheduler, "add_noise"):  # flow: at sigma 1 the latent is noise
                return add_noise(scheduler, init_latents, noise, timesteps[:1].repeat(batch))
            return init_latents + noise * sigma
        return add_noise(scheduler, init_latents, noise, timesteps[:1].repeat(batch))
    if init_latents is not None and denoise_strength < 1.0:
        return add_noise(scheduler, init_latents, noise, timesteps[:1].repeat(batch))
    return noise * sigma


class UNetNetwork:
    """The Stable Diffusion families' network call: a UNet with text embeddings (and SDXL's
    added conditioning), an inpainting UNet's extra channels, ControlNet residuals."""

    def __init__(self, unet: Any, call: Any, family: Any) -> None:
        self.unet, self.call, self.family = unet, call, family
        self.concat: Any = None  # [B, 1 + C, h, w] for an inpainting UNet
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
        return unet_condition(
            self.unet,
            cond,
            batch,
            device,
            dtype,
            family=self.family,
            pixel_size=pixel_size,
            negative=negative,
        )

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return stack(a, b)

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        import torch

        extra: dict[str, Any] = {}
        if cond.control:
            from easel.models.controlnet import control_residuals

            extra = control_residuals(
                cond.control, x, t, cond.encoder_hidden_states, cond.added, self.step, self.total
            )
        if self.concat is not None:
            x = torch.cat(
                [x, self.concat.repeat(x.shape[0] // self.concat.shape[0], 1, 1, 1)], dim=1
            )
        return self.call(
            x,
            t,
            encoder_hidden_states=cond.encoder_hidden_states,
            added_cond_kwargs=cond.added,
            return_dict=False,
            **extra,
        )[0]


def follow_sigmas(scheduler: Any, sigmas: Any, device: Any, flow: bool) -> Any:
    """Make `scheduler` step through explicit `sigmas` (a SIGMAS value: descending noise
    levels, usually ending in 0; flow models' already shifted), as ComfyUI's custom samplers
    do. The scheduler is set up for that many steps, then its sigmas and the matching
    timesteps are replaced; only schedulers that step from `scheduler.sigmas` alone can do this
    (CUSTOM_SIGMAS_SCHEDULERS). Returns the timesteps."""
    import numpy as np
    import torch

    values = [float(v) for v in sigmas]
    count = len(values) - 1
    scheduler.set_timesteps(count, device=device)
    levels = torch.tensor(values, dtype=torch.float32)
    if flow:
        timesteps = levels[:-1] * float(scheduler.config.num_train_timesteps)
    else:
        alphas = np.asarray(scheduler.alphas_cumprod, dtype=np.float64)
        log_sigmas = np.log(((1 - alphas) / alphas) ** 0.5)
        # Euler's sigma -> timestep interpolation (it reads only its arguments): schedulers
        # without one of their own, such as EulerAncestral, step by the same timesteps
        from diffusers import EulerDiscreteScheduler

        to_t = EulerDiscreteScheduler._sigma_to_t
        timesteps = torch.tensor(
            [float(to_t(scheduler, np.array(v), log_sigmas)) for v in values[:-1]],
            dtype=torch.float32,
        )
    scheduler.sigmas = levels.to(scheduler.sigmas.device)
    scheduler.timesteps = timesteps.to(device)
    scheduler.num_inference_steps = count
    if hasattr(scheduler, "_step_index"):
        scheduler._step_index = None
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(0)
    return scheduler.timesteps


# Schedulers whose steps read nothing but `sigmas` (and their own history): they can follow a
# SIGMAS value. Second-order and ancestral-by-timestep ones rebuild their grids themselves.
CUSTOM_SIGMAS_SCHEDULERS = frozenset(
    {
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "LMSDiscreteScheduler",
        "DPMSolverMultistepScheduler",
        "UniPCMultistepScheduler",
        "FlowMatchEulerDiscreteScheduler",
        "FlowMatchLCMScheduler",
        "FlowResMultistepScheduler",
        "FlowEulerAncestralScheduler",
        "FlowERSDEScheduler",
    }
)


def noise_scaling(prediction: str, sigma: float, noise: Any, latent: Any, max_sigma: float) -> Any:
    """The sample a schedule starting at `sigma` begins from, as ComfyUI's model sampling
    makes it: flow `sigma * noise + (1 - sigma) * latent`; eps and v `latent + noise * sigma`,
    or `noise * sqrt(1 + sigma^2)` added when the schedule starts at the model's highest noise
    level (ComfyUI's max_denoise). A flow run that stops at a level above 0 divides its
    result by (1 - sigma), so the next run's scaling gives the sample back (ComfyUI's
    inverse_noise_scaling)."""
    if prediction == "flow":
        return sigma * noise + (1.0 - sigma) * latent
    if sigma >= max_sigma * (1 - 1e-5):
        return latent + noise * (1.0 + sigma**2) ** 0.5
    return latent + noise * sigma


def denoise(
    unet: Any,
    scheduler: Any,
    *,
    noise: Any,
    positive: dict[str, Any],
    negative: dict[str, Any] | None,
    cfg: float,
    steps: int,
    denoise_strength: float = 1.0,
    init_latents: Any = None,
    generator: Any = None,
    callback: StepCallback | None = None,
    forward: Any = None,
    family: Any = None,
    window: Window | None = None,
    inpaint: Inpaint | None = None,
    vae_factor: int = 8,
    flow: FlowSchedule | None = None,
    guidance: Any = None,
    sigmas: Any = None,
    on_denoised: Callable[[Any], None] | None = None,
    sampling_kind: str | None = None,
) -> Any:
    """Sample latents. `noise` comes from a seeded CPU generator; `init_latents` (scaled
    latents) start image-to-image when `denoise_strength` < 1, or a window. `forward` is what
    to call instead of `unet` (LoRA patches bound); `family` gives the network adapter and the
    added conditioning; `vae_factor` the image size SDXL's size conditioning defaults to;
    `flow` the sigmas of a flow-matching family.

    ComfyUI's custom sampling: `guidance` (easel.models.guidance.Guidance) replaces
    positive / negative / cfg; `sigmas` are explicit noise levels to step through (then
    `init_latents` is the latent the noise is added to, scaled as ComfyUI does, and `steps`,
    `denoise_strength` and `window` are not used); `on_denoised` receives the last step's
    denoised estimate. `sampling_kind` "img_to_img_velocity" starts from `init_latents` as
    they are and reads the network's output as the step to the target
    (easel.models.marigold_sampling). Returns scaled latents."""
    import inspect

    import torch

    from easel.models import guidance as guidance_lib
    from easel.models import marigold_sampling
    from easel.models import skip_layer_guidance as slg

    param = next(unet.parameters())
    # fp8-stored weights (layerwise casting) compute in the dtype the loader recorded
    device, dtype = param.device, getattr(unet, "easel_compute_dtype", param.dtype)
    network = network_for(unet, family, forward if forward is not None else unet)
    batch = noise.shape[0]
    prediction = str(getattr(family, "prediction_type", None) or "epsilon")
    prediction = str(getattr(scheduler.config, "prediction_type", None) or prediction)
    if flow is not None or prediction == "flow_prediction":
        prediction = "flow"
    velocity = sampling_kind == marigold_sampling.IMG_TO_IMG_VELOCITY and prediction == "flow"
    noise = noise.to(device=device, dtype=torch.float32)
    if init_latents is not None:
        init_latents = init_latents.to(device=device, dtype=torch.float32)
    if sigmas is not None:
        own = getattr(scheduler, "sigmas", None)  # the model's highest level (eps, v)
        max_sigma = float(own.max()) if own is not None else 1.0
        timesteps = follow_sigmas(scheduler, sigmas, device, prediction == "flow")
        start = init_latents if init_latents is not None else torch.zeros_like(noise)
        latents = noise_scaling(prediction, float(sigmas[0]), noise, start, max_sigma)
        if velocity:
            latents = marigold_sampling.start_latent(init_latents, noise)
        latents = latents.to(dtype)
    else:
        timesteps, _ = timesteps_for(scheduler, steps, denoise_strength, device, window, flow)
        latents = initial_latents(
            scheduler,
            noise,
            timesteps,
            init_latents=init_latents,
            denoise_strength=denoise_strength,
            window=window,
        ).to(dtype)
        if velocity:
            latents = marigold_sampling.start_latent(init_latents, noise).to(dtype)
    size = (noise.shape[2] * vae_factor, noise.shape[3] * vae_factor)  # the image's pixels

    if guidance is None:
        guidance = guidance_lib.cfg(positive, negative, cfg)
    conds = [
        network.condition(
            cond, batch, device, dtype, pixel_size=size, negative=guidance.is_negative(index)
        )
        for index, cond in enumerate(guidance.conds)
    ]
    if (
        len(conds) == 2
        and guidance.is_negative(0)
        and not conds[0].control
        and guidance.conds[1].get("control_apply_to_uncond")
    ):
        from easel.models.controlnet import control_for_uncond  # ControlNetApply, as ComfyUI

        conds[0].control = control_for_uncond(guidance.conds[1], guidance.conds[0])
    both = network.stack(conds[0], conds[1]) if len(conds) == 2 else None
    step_kwargs: dict[str, Any] = {}
    if generator is not None and "generator" in inspect.signature(scheduler.step).parameters:
        step_kwargs["generator"] = generator
    if inpaint is not None and inpaint.concat is not None:
        if not isinstance(network, UNetNetwork):
            raise ValueError(
                f"{family.label} takes no inpainting-model conditioning: use SetLatentNoiseMask"
            )
        network.concat = inpaint.concat.to(device=device, dtype=dtype)
    total = len(timesteps)
    network.total = total
    network.schedule = scheduler  # its levels: a flow map reads the one each step goes to
    levels = scheduler.sigmas if sigmas is not None else None

    with torch.inference_mode():
        for i, t in enumerate(timesteps):
            network.step = i
            skip = None  # SkipLayerGuidanceDiTSimple: blocks the negative's pass skips
            if slg.has_uncond(guidance.post_cfg):
                level = _sigma_at(scheduler, levels, i, t, prediction)
                skip = slg.uncond_skip(guidance.post_cfg, level)
            if both is not None and skip is None:
                x = scale_input(scheduler, torch.cat([latents] * 2), t, network)
                preds = list(network(x, t, both).chunk(2))
            elif skip is not None:
                x = scale_input(scheduler, latents, t, network)
                preds = [
                    slg.predict(network, x, t, cond, skip if guidance.is_negative(k) else None)
                    for k, cond in enumerate(conds)
                ]
            else:
                x = scale_input(scheduler, latents, t, network)
                preds = [network(x, t, cond) for cond in conds]
            if velocity:  # the outputs as the flow velocities the sampler steps with
                level = _sigma_at(scheduler, levels, i, t, prediction)
                preds = [marigold_sampling.as_flow_velocity(p, level) for p in preds]
            noise_pred = guidance.combine(preds)
            last = i == total - 1
            if guidance.post_cfg or (on_denoised is not None and last):
                sigma = _sigma_at(scheduler, levels, i, t, prediction)
                denoised = guidance_lib.to_denoised(prediction, latents, noise_pred, sigma)
                if guidance.post_cfg:
                    cond_x0 = guidance_lib.to_denoised(
                        prediction, latents, preds[guidance.cond_index], sigma
                    )
                    one = x[: latents.shape[0]]  # one batch of the input (SkipLayerGuidance)
                    cond = conds[guidance.cond_index]
                    step = slg.Step(network, one, t, cond, sigma, prediction, latents)
                    for patch in guidance.post_cfg:
                        denoised = slg.apply(patch, denoised, cond_x0, step)
                    noise_pred = guidance_lib.from_denoised(prediction, latents, denoised, sigma)
                if on_denoised is not None and last:
                    on_denoised(denoised)
            latents = scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0]
            if inpaint is not None and inpaint.blend:
                latents = blend_outside_mask(scheduler, latents, inpaint, noise, timesteps, i)
            if callback is not None:
                callback(i + 1, total, latents)
    if sigmas is not None and prediction == "flow" and 0.0 < float(sigmas[-1]) < 1.0:
        latents = latents / (1.0 - float(sigmas[-1]))  # noise_scaling's inverse (ComfyUI's)
    return latents


def _sigma_at(scheduler: Any, levels: Any, index: int, t: Any, prediction: str) -> float:
    """The noise level of step `index` (explicit sigmas, the scheduler's own, or the flow
    timestep / 1000)."""
    if levels is not None:
        return float(levels[index])
    if prediction == "flow":
        return float(t) / float(scheduler.config.num_train_timesteps)
    step = getattr(scheduler, "step_index", None)
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is None:
        raise ValueError(f"{type(scheduler).__name__} has no noise levels to patch CFG with")
    return float(sigmas[step if step is not None else index])


def blend_outside_mask(
    scheduler: Any, latents: Any, inpaint: Inpaint, noise: Any, timesteps: Any, i: int
) -> Any:
    """Outside the mask, the source latent noised to the next step (unnoised after the last),
    as diffusers' StableDiffusionInpaintPipeline does."""
    source = inpaint.source.to(device=latents.device, dtype=noise.dtype)
    if i < len(timesteps) - 1:
        source = add_noise(
            scheduler, source, noise, timesteps[i + 1 : i + 2].repeat(noise.shape[0])
        )
    mask = inpaint.mask.to(device=latents.device, dtype=latents.dtype)
    if inpaint.differential is not None:
        mask = differential_mask(mask, timesteps, min(i + 1, len(timesteps) - 1), inpaint)
    return (1 - mask) * source.to(latents.dtype) + mask * latents


def differential_mask(mask: Any, timesteps: Any, index: int, inpaint: Inpaint) -> Any:
    """Differential diffusion (ComfyUI's DifferentialDiffusion): at the level of step `index`
    only mask values at or above its progress threshold are painted, so the painted area
    grows from the mask's strongest values to its weakest as the noise falls; `differential`
    below 1 blends that binary mask with the soft one. The threshold is the step's timestep
    between the run's first and the lowest (taken as 0) on a 1..0 scale."""
    start = float(timesteps[0])
    threshold = float(timesteps[index]) / start if start > 0 else 0.0
    binary = (mask >= threshold).to(mask.dtype)
    strength = float(inpaint.differential or 0.0)
    if 0.0 < strength < 1.0:
        return strength * binary + (1 - strength) * mask
    return binary
