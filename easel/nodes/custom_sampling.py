"""ComfyUI's custom sampling, piece by piece: a sampler (KSamplerSelect), noise levels
(BasicScheduler, ManualSigmas, SplitSigmas), a noise source (RandomNoise, DisableNoise) and
a guider (CFGGuider, BasicGuider, DualCFGGuider) meet in SamplerCustomAdvanced; SamplerCustom
takes the model, the conditionings and the seed itself. CFGNorm patches a model's CFG.

The loop is Easel's one sampler loop (easel.models.sampling.denoise) stepping through the
SIGMAS given, with the diffusers scheduler of the sampler name (easel.nodes.samplers_table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Conditioning, Guider, Latent, Model, Noise, Sampler, Sigmas
from easel.models.marigold_sampling import KEY as SAMPLING_KIND
from easel.nodes.primitives import MAX_SEED
from easel.nodes.samplers_table import FLOW_SAMPLERS, SAMPLER_NAMES, SAMPLERS, SCHEDULE_NAMES


@dataclass(frozen=True)
class SamplerChoice:
    """SAMPLER: a sampler name of Easel's table, resolved against the model when sampling."""

    name: str


@dataclass(frozen=True)
class NoiseSource:
    """NOISE: Gaussian noise from a CPU generator seeded by `seed`, or none (`seed` None)."""

    seed: int | None


@dataclass(frozen=True, eq=False)
class GuiderValue:
    """GUIDER: a model and how its conditionings combine (`kind` "cfg", "basic" or "dual")."""

    model: Any
    conds: tuple[dict[str, Any], ...]
    kind: str
    scales: tuple[float, ...] = ()
    style: str = "regular"

    def guidance(self) -> Any:
        from easel.models import guidance

        if self.kind == "basic":
            return guidance.Guidance((self.conds[0],), lambda preds: preds[0])
        if self.kind == "dual":
            cond1, cond2, negative = self.conds
            s1, s2 = self.scales
            return guidance.dual_cfg(cond1, cond2, negative, s1, s2, self.style)
        positive, negative = self.conds
        return guidance.cfg(positive, negative, self.scales[0])


@node(category="sampling/custom_sampling", outputs={"sampler": Sampler})
def KSamplerSelect(sampler_name: str = Input("euler", choices=list(SAMPLER_NAMES))) -> Any:
    """A sampler by name, for SamplerCustomAdvanced and SamplerCustom. Samplers that step
    through given noise levels: euler, euler_ancestral, lms, dpmpp_2m, dpmpp_2m_sde, uni_pc
    (flow models: euler, euler_ancestral, dpmpp_2m, dpmpp_2m_sde, uni_pc, lcm,
    res_multistep)."""
    return SamplerChoice(sampler_name)


@node(category="sampling/custom_sampling", outputs={"sigmas": Sigmas})
def BasicScheduler(
    model: Model,
    scheduler: str = Input("simple", choices=list(SCHEDULE_NAMES)),
    steps: int = Input(20, ge=1, le=10000),
    denoise: float = Input(1.0, ge=0.0, le=1.0, step=0.01),
) -> Any:
    """The model's noise levels for `steps` steps of `scheduler` (the schedules of KSampler),
    the last `steps` of a longer schedule when `denoise` < 1. A flow model with a
    resolution-dependent shift takes a 1024x1024 image's shift (ModelSamplingFlux sets
    another)."""
    try:
        return model_sigmas(model, scheduler, steps, denoise)
    except ValueError as exc:
        raise NodeError(str(exc), "scheduler") from exc


@node(category="sampling/custom_sampling", outputs={"sigmas": Sigmas})
def ManualSigmas(sigmas: str = Input("1, 0.5", multiline=False)) -> Any:
    """Noise levels typed in: every number in the text, in order (ComfyUI's ManualSigmas)."""
    from easel.models.sigmas import parse_sigmas

    try:
        return parse_sigmas(sigmas)
    except ValueError as exc:
        raise NodeError(str(exc), "sigmas") from exc


@node(
    category="sampling/custom_sampling",
    outputs={"high_sigmas": Sigmas, "low_sigmas": Sigmas},
)
def SplitSigmas(sigmas: Sigmas, step: int = Input(0, ge=0, le=10000)) -> Any:
    """Split noise levels at `step`: the first part ends where the second begins."""
    from easel.models.sigmas import split

    return split(sigmas, step)


@node(
    category="sampling/custom_sampling",
    outputs={"high_sigmas": Sigmas, "low_sigmas": Sigmas},
)
def SplitSigmasDenoise(
    sigmas: Sigmas, denoise: float = Input(1.0, ge=0.0, le=1.0, step=0.01)
) -> Any:
    """Split noise levels so the low part is the last `denoise` of the steps."""
    from easel.models.sigmas import split_denoise

    return split_denoise(sigmas, denoise)


@node(category="sampling/custom_sampling", outputs={"noise": Noise})
def RandomNoise(noise_seed: int = Input(0, ge=0, le=MAX_SEED, widget="seed")) -> Any:
    """Gaussian noise seeded by `noise_seed` (a CPU generator: the same on every device)."""
    return NoiseSource(noise_seed)


@node(category="sampling/custom_sampling", outputs={"noise": Noise})
def DisableNoise() -> Any:
    """No noise: the latent is sampled as it is (a second pass on leftover noise)."""
    return NoiseSource(None)


@node(category="sampling/custom_sampling", outputs={"guider": Guider})
def CFGGuider(
    model: Model,
    positive: Conditioning,
    negative: Conditioning,
    cfg: float = Input(8.0, ge=0.0, le=100.0, step=0.1),
) -> Any:
    """Classifier-free guidance: uncond + cfg * (cond - uncond); at cfg 1 the positive alone."""
    return GuiderValue(model, (positive, negative), "cfg", (cfg,))


@node(category="sampling/custom_sampling", outputs={"guider": Guider})
def BasicGuider(model: Model, conditioning: Conditioning) -> Any:
    """One conditioning, no CFG (Flux dev's embedded guidance, distilled models)."""
    return GuiderValue(model, (conditioning,), "basic")


@node(category="sampling/custom_sampling", outputs={"guider": Guider})
def DualCFGGuider(
    model: Model,
    cond1: Conditioning,
    cond2: Conditioning,
    negative: Conditioning,
    cfg_conds: float = Input(8.0, ge=0.0, le=100.0, step=0.1),
    cfg_cond2_negative: float = Input(8.0, ge=0.0, le=100.0, step=0.1),
    style: str = Input("regular", choices=["regular", "nested"]),
) -> Any:
    """Two conditionings against one negative (InstructPix2Pix-style): "regular" is
    neg + s2 (cond2 - neg) + s1 (cond1 - cond2) with s1 = cfg_conds, s2 = cfg_cond2_negative;
    "nested" is neg + s2 ((cond2 + s1 (cond1 - cond2)) - neg)."""
    return GuiderValue(
        model, (cond1, cond2, negative), "dual", (cfg_conds, cfg_cond2_negative), style
    )


@node(category="advanced/guidance", outputs={"model": Model})
def CFGNorm(model: Model, strength: float = Input(1.0, ge=0.0, le=100.0, step=0.01)) -> Any:
    """Keep CFG from overshooting (ComfyUI's CFGNorm, used by Qwen-Image): each step's guided
    denoised estimate is scaled down, per pixel, to the norm of the conditional one, times
    `strength`."""
    from easel.models.guidance import cfg_norm

    return model.with_post_cfg(cfg_norm(strength))


def is_flow(model: Any) -> bool:
    return getattr(model.family, "prediction_type", None) == "flow"


def model_sigmas(
    model: Any, schedule: str, steps: int, denoise: float = 1.0, tokens: int | None = None
) -> Any:
    """ComfyUI's BasicScheduler (the schedules of KSampler, so both step through the same
    levels): the last `steps` + 1 levels of the model's `schedule` of
    steps / denoise steps (empty when `denoise` is 0). `tokens` is the image's token count
    for a resolution-dependent flow shift (without it, a 1024x1024 image's)."""
    import torch

    from easel.models.sampling import make_scheduler
    from easel.models.sigmas import DEFAULT_IMAGE_TOKENS, flow_levels, steps_of
    from easel.nodes.samplers_table import (
        FLOW_SCHEDULES,
        LINEAR_FLOW_SCHEDULES,
        scheduler_spec,
    )

    if denoise <= 0.0:
        return torch.zeros(0, dtype=torch.float32)
    total = steps_of(steps, denoise)
    config = {**model.scheduler_config, **model.sampling}
    if is_flow(model):
        if schedule not in FLOW_SCHEDULES:
            raise ValueError(
                f"schedule {schedule!r} has no flow-matching form; flow models take: "
                f"{', '.join(FLOW_SCHEDULES)}"
            )
        image_tokens = tokens or int(config.get("max_image_seq_len", DEFAULT_IMAGE_TOKENS))
        levels = flow_levels(
            config,
            dict(FLOW_SCHEDULES[schedule]),
            schedule in LINEAR_FLOW_SCHEDULES,
            total,
            image_tokens,
        )
    else:
        class_name, options = scheduler_spec("euler", schedule)
        scheduler = make_scheduler(class_name, options, config)
        scheduler.set_timesteps(total, device="cpu")
        levels = scheduler.sigmas
    return levels[-(steps + 1) :].detach().float().cpu().clone()


def _scheduler(model: Any, name: str, seed: int | None) -> Any:
    """The diffusers scheduler of sampler `name` for `model`, ready to follow given sigmas."""
    from easel.models.sampling import CUSTOM_SIGMAS_SCHEDULERS, make_scheduler

    flow = is_flow(model)
    table = FLOW_SAMPLERS if flow else SAMPLERS
    entry = table.get(name)
    can = sorted(n for n, e in table.items() if e.scheduler_class in CUSTOM_SIGMAS_SCHEDULERS)
    if entry is None or entry.scheduler_class not in CUSTOM_SIGMAS_SCHEDULERS:
        kind = "a flow-matching model" if flow else "this model"
        raise NodeError(
            f"sampler {name!r} cannot step through given noise levels (SIGMAS) on {kind}; "
            f"these can: {', '.join(can)}",
            "sampler",
        )
    options = dict(entry.options)
    config = {**model.scheduler_config, **model.sampling}
    if flow:  # the SIGMAS are already shifted
        config = {**config, "shift": 1.0, "use_dynamic_shifting": False}
        if "flow_shift" in entry.options or entry.options.get("use_flow_sigmas"):
            config["flow_shift"] = 1.0
    if entry.seeded_by_config and seed is not None:
        options[entry.seeded_by_config] = seed
    return make_scheduler(entry.scheduler_class, options, config)


def custom_sample(
    ctx: Context,
    guider: GuiderValue,
    sampler: SamplerChoice,
    sigmas: Any,
    latent: dict[str, Any],
    noise: NoiseSource,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(output, denoised_output) of sampling `latent` through `sigmas`."""
    import torch

    from easel.models.sampling import denoise
    from easel.nodes.inpaint import inpaint_inputs
    from easel.nodes.sampling import (
        in_model_scale,
        latent_out,
        latent_shape,
        model_guidance,
        noise_for,
        previewer,
    )

    model = guider.model
    if sigmas.ndim != 1:
        raise NodeError(f"sigmas must be a list of noise levels, got shape {tuple(sigmas.shape)}")
    if len(sigmas) < 2:  # nothing to do (ComfyUI returns the latent as it is)
        same = dict(latent)
        return same, same
    empty = "width" in latent and "height" in latent and not bool(latent["samples"].any())
    shape = latent_shape(model, latent, empty)
    if empty and tuple(latent["samples"].shape) != shape:
        latent = {**latent, "samples": torch.zeros(shape)}
    latent = in_model_scale(model, latent)
    seed = noise.seed
    generator = None
    if seed is None:
        noise_tensor = torch.zeros(shape)
    else:
        noise_tensor, generator = noise_for(shape, seed)
    scheduler = _scheduler(model, sampler.name, seed)
    guidance = model_guidance(model, guider.guidance())
    inpaint = inpaint_inputs(model, guidance.conds[-1], latent, shape)
    kept: list[Any] = []
    try:
        samples = denoise(
            model.manager.place(model.unet),
            scheduler,
            noise=noise_tensor,
            positive=guidance.conds[-1],
            negative=None,
            cfg=1.0,
            steps=len(sigmas) - 1,
            init_latents=latent["samples"],
            generator=generator,
            callback=previewer(ctx, model),
            forward=model.forward(),
            family=model.family,
            inpaint=inpaint,
            vae_factor=model.vae_scale_factor,
            guidance=guidance,
            sigmas=sigmas,
            on_denoised=kept.append,
            sampling_kind=model.sampling.get(SAMPLING_KIND),
        )
    except ValueError as exc:
        raise NodeError(str(exc), "guider") from exc
    output = latent_out(model, samples, latent)
    denoised = latent_out(model, kept[-1] if kept else samples, latent)
    return output, denoised


@node(
    category="sampling/custom_sampling",
    outputs={"output": Latent, "denoised_output": Latent},
)
def SamplerCustomAdvanced(
    ctx: Context,
    noise: Noise,
    guider: Guider,
    sampler: Sampler,
    sigmas: Sigmas,
    latent_image: Latent,
) -> Any:
    """Sample `latent_image` through the noise levels `sigmas` with `sampler`, the guider's
    model and conditionings, and `noise` added at the first level (an empty latent starts
    from pure noise; a latent with a noise mask is inpainted). `denoised_output` is the last
    step's denoised estimate (the output itself when the levels end at 0)."""
    return custom_sample(ctx, guider, sampler, sigmas, latent_image, noise)


@node(
    category="sampling/custom_sampling",
    outputs={"output": Latent, "denoised_output": Latent},
)
def SamplerCustom(
    ctx: Context,
    model: Model,
    positive: Conditioning,
    negative: Conditioning,
    sampler: Sampler,
    sigmas: Sigmas,
    latent_image: Latent,
    add_noise: bool = True,
    noise_seed: int = Input(0, ge=0, le=MAX_SEED, widget="seed"),
    cfg: float = Input(8.0, ge=0.0, le=100.0, step=0.1),
) -> Any:
    """SamplerCustomAdvanced with the guider (CFG) and the noise (seeded, or none without
    `add_noise`) given as inputs."""
    guider = GuiderValue(model, (positive, negative), "cfg", (cfg,))
    noise = NoiseSource(noise_seed if add_noise else None)
    return custom_sample(ctx, guider, sampler, sigmas, latent_image, noise)


NODES = [
    KSamplerSelect,
    BasicScheduler,
    ManualSigmas,
    SplitSigmas,
    SplitSigmasDenoise,
    RandomNoise,
    DisableNoise,
    CFGGuider,
    BasicGuider,
    DualCFGGuider,
    CFGNorm,
    SamplerCustomAdvanced,
    SamplerCustom,
]
