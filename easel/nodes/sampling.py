"""KSampler: denoise a latent with a diffusers scheduler under the sampler names users know."""

from __future__ import annotations

import time
from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Conditioning, Latent, Model
from easel.models.marigold_sampling import KEY as SAMPLING_KIND
from easel.nodes.primitives import MAX_SEED
from easel.nodes.samplers_table import SAMPLER_NAMES, SAMPLERS, SCHEDULE_NAMES, pair_problem


def _check_pair(ctx: Context, inputs: dict[str, Any]) -> list[tuple[str, str]]:
    problem = pair_problem(str(inputs.get("sampler_name")), str(inputs.get("scheduler")))
    return [("scheduler", problem)] if problem else []


def noise_for(shape: tuple[int, ...], seed: int) -> tuple[Any, Any]:
    """Initial noise from a CPU generator seeded by `seed` (the same on every device), and
    the generator, whose stream later steps (ancestral, SDE) continue."""
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32), generator


def empty_latent_size(pixels: int, factor: int) -> int:
    """Latent cells along one side for `pixels` at VAE `factor`, as ComfyUI sizes them."""
    base = min(factor, 8)
    return max(1, round((pixels // base) * base / factor))


def latent_shape(model: Any, latent: dict[str, Any], full: bool) -> tuple[int, ...]:
    """The shape to sample: an empty latent takes the model's channels and VAE factor.

    A size that is not a multiple of the factor is rounded as ComfyUI rounds an empty latent
    for the model (an 8x latent, floored, rescaled to the model's factor and rounded), so a
    1296x728 template on a 16x model samples 81x46 latents.
    """
    samples = latent["samples"]
    if full and "width" in latent and "height" in latent:
        factor = model.vae_scale_factor
        width, height = int(latent["width"]), int(latent["height"])
        return (
            samples.shape[0],
            model.latent_channels,
            empty_latent_size(height, factor),
            empty_latent_size(width, factor),
        )
    if samples.shape[1] != model.latent_channels:
        raise NodeError(
            f"the latent has {samples.shape[1]} channels but the model expects "
            f"{model.latent_channels}: was it made by another model's VAE?",
            "latent",
        )
    return tuple(samples.shape)


def default_negative(positive: dict[str, Any]) -> dict[str, Any]:
    """The negative used when none is linked: the empty prompt, or zero image embeddings."""
    import torch

    if positive.get("uncond") is not None:
        return positive["uncond"]
    return {
        key: torch.zeros_like(value)
        for key, value in positive.items()
        if key in ("embeds", "image_embeds", "pooled") and value is not None
    }


PREVIEW_INTERVAL = 0.1  # seconds between latent previews


def previewer(ctx: Context, model: Any) -> Any:
    """A per-step callback reporting progress with a small latent preview."""
    from easel.models.preview import fit_latent_to_rgb, latent_preview

    if model.preview_matrix is None and model.vae is not None:
        try:
            model.manager.place(model.vae.vae)
            model.preview_matrix = fit_latent_to_rgb(model.vae)
        except Exception as exc:  # a preview is a nicety: never fail the sampler for it
            ctx.logger.debug("no latent preview: %s", exc)
            model.preview_matrix = False

    last_preview = [0.0]

    def callback(step: int, total: int, latents: Any) -> None:
        # Progress every step; a preview at most every PREVIEW_INTERVAL seconds (and on the
        # last step), so fast steps are not slowed down by pictures nobody can see.
        matrix = model.preview_matrix
        preview = None
        now = time.monotonic()
        if (
            matrix is not False
            and matrix is not None
            and (now - last_preview[0] >= PREVIEW_INTERVAL or step == total)
        ):
            preview = latent_preview(latents, matrix)
            last_preview[0] = now
        ctx.progress(step, total, preview)

    return callback


def sample(
    ctx: Context,
    model: Any,
    positive: Any,
    negative: Any,
    latent: dict[str, Any],
    *,
    seed: int,
    steps: int,
    cfg: float,
    sampler_name: str,
    scheduler: str,
    denoise: float = 1.0,
    window: Any = None,
) -> Any:
    """What KSampler and KSamplerAdvanced share: one sampler loop for every family."""
    from easel.models.guidance import cfg as cfg_guidance
    from easel.models.sampling import denoise as run_denoise
    from easel.models.sampling import make_scheduler
    from easel.nodes.inpaint import inpaint_inputs
    from easel.nodes.samplers_table import scheduler_spec

    full = denoise >= 1.0 and window is None
    # an empty latent (EmptyLatent) takes this model's channels and VAE factor, windows too
    empty = "width" in latent and "height" in latent and not bool(latent["samples"].any())
    shape = latent_shape(model, latent, full or empty)
    config = {**model.scheduler_config, **model.sampling}
    flow = None
    if is_flow(model):
        from easel.models.sampling import flow_config
        from easel.nodes.samplers_table import flow_spec

        patch = int(getattr(model.family, "patch", 1))
        tokens = (shape[2] // patch) * (shape[3] // patch)
        try:
            class_name, options, linear = flow_spec(sampler_name, scheduler)
        except ValueError as exc:
            # the pair has no scheduler of its own: the sampler steps through the schedule's
            # noise levels (as ComfyUI's samplers and schedules combine freely)
            levels = flow_levels_for(model, sampler_name, scheduler, steps, denoise, tokens)
            if levels is None:
                raise NodeError(str(exc), "sampler_name") from exc
            return sample_through_levels(
                ctx, model, positive, negative, latent, levels, seed, cfg, sampler_name, window
            )
        config, flow = flow_config(config, class_name, linear, tokens)
    else:
        if sampler_name not in SAMPLERS:
            raise NodeError(
                f"sampler {sampler_name!r} runs on flow-matching models only (Flux, SD3, "
                "Qwen-Image, ...); this model is not one",
                "sampler_name",
            )
        class_name, options = scheduler_spec(sampler_name, scheduler)
        seeded = SAMPLERS[sampler_name].seeded_by_config
        if seeded:
            options[seeded] = seed
    sched = make_scheduler(class_name, options, config)
    if empty and tuple(latent["samples"].shape) != shape:
        import torch

        latent = {**latent, "samples": torch.zeros(shape)}
    noise, generator = noise_for(shape, seed)
    negative = negative if negative is not None else default_negative(positive)
    unet = model.manager.place(model.unet)
    latent = in_model_scale(model, latent)
    inpaint = inpaint_inputs(model, positive, latent, shape)
    kind = model.sampling.get(SAMPLING_KIND)  # img_to_img_velocity starts from the latent
    use_latent = not full or window is not None or kind is not None
    guidance = model_guidance(model, cfg_guidance(positive, negative, cfg))
    try:
        samples = run_denoise(
            unet,
            sched,
            noise=noise,
            positive=positive,
            negative=negative,
            cfg=cfg,
            guidance=guidance,
            steps=steps,
            denoise_strength=denoise,
            init_latents=latent["samples"] if use_latent else None,
            generator=generator,
            callback=previewer(ctx, model),
            forward=model.forward(),
            family=model.family,
            window=window,
            inpaint=inpaint,
            vae_factor=model.vae_scale_factor,
            flow=flow,
            sampling_kind=kind,
        )
    except ValueError as exc:
        raise NodeError(str(exc), "positive") from exc
    return latent_out(model, samples, latent)


def flow_levels_for(
    model: Any, sampler_name: str, schedule: str, steps: int, denoise: float, tokens: int
) -> Any:
    """The noise levels of `schedule` for a flow model whose sampler can follow them, or None
    when it cannot (or the schedule has no flow form)."""
    from easel.models.sampling import CUSTOM_SIGMAS_SCHEDULERS
    from easel.nodes.custom_sampling import model_sigmas
    from easel.nodes.samplers_table import FLOW_SAMPLERS, FLOW_SCHEDULES

    entry = FLOW_SAMPLERS.get(sampler_name)
    if entry is None or entry.scheduler_class not in CUSTOM_SIGMAS_SCHEDULERS:
        return None
    if schedule not in FLOW_SCHEDULES:
        return None
    return model_sigmas(model, schedule, steps, denoise, tokens)


def sample_through_levels(
    ctx: Context,
    model: Any,
    positive: Any,
    negative: Any,
    latent: dict[str, Any],
    levels: Any,
    seed: int,
    cfg: float,
    sampler_name: str,
    window: Any,
) -> Any:
    """KSampler(Advanced) as custom sampling through `levels` (a window cuts them: the last
    level is 0 unless the noise is left in; without add_noise no noise is added)."""
    from easel.nodes.custom_sampling import GuiderValue, NoiseSource, SamplerChoice, custom_sample

    add = True
    if window is not None:
        end = len(levels) - 1 if window.end is None else min(window.end, len(levels) - 1)
        cut = levels[window.start : end + 1].clone()
        if end < len(levels) - 1 and not window.leftover_noise:
            cut[-1] = 0.0
        levels, add = cut, window.add_noise
    negative = negative if negative is not None else default_negative(positive)
    guider = GuiderValue(model, (positive, negative), "cfg", (cfg,))
    noise = NoiseSource(seed if add else None)
    output, _ = custom_sample(ctx, guider, SamplerChoice(sampler_name), levels, latent, noise)
    return output


def latent_out(model: Any, samples: Any, latent: dict[str, Any]) -> dict[str, Any]:
    """A LATENT of sampled `samples`, with the input's noise mask and the family's scaling."""
    out = {"samples": samples.float().cpu()}
    if "noise_mask" in latent:
        out["noise_mask"] = latent["noise_mask"]
    if model.family is not None:
        out["scaling_factor"] = model.family.latent.scaling_factor
        out["shift_factor"] = model.family.latent.shift_factor
    return out


def model_guidance(model: Any, guidance: Any) -> Any:
    """`guidance` with the model's post-CFG patches (CFGNorm) added."""
    from dataclasses import replace

    if not model.post_cfg:
        return guidance
    return replace(guidance, post_cfg=(*guidance.post_cfg, *model.post_cfg))


def is_flow(model: Any) -> bool:
    """Whether the model's family samples by flow matching (its registry entry says)."""
    return getattr(model.family, "prediction_type", None) == "flow"


def in_model_scale(model: Any, latent: dict[str, Any]) -> dict[str, Any]:
    """The latent in the model family's scaling: a latent encoded by a VAE of another
    scaling (a VAELoader file) records its own, and is rescaled here."""
    if model.family is None or "scaling_factor" not in latent:
        return latent
    fmt = model.family.latent
    scale, shift = float(latent["scaling_factor"]), float(latent.get("shift_factor", 0.0))
    if (scale, shift) == (fmt.scaling_factor, fmt.shift_factor):
        return latent
    raw = latent["samples"] / scale + shift
    return {
        **latent,
        "samples": (raw - fmt.shift_factor) * fmt.scaling_factor,
        "scaling_factor": fmt.scaling_factor,
        "shift_factor": fmt.shift_factor,
    }


@node(category="sampling", outputs={"latent": Latent}, check=_check_pair)
def KSampler(
    ctx: Context,
    model: Model,
    positive: Conditioning,
    negative: Conditioning | None = None,
    *,
    latent: Latent,
    seed: int = Input(0, ge=0, le=MAX_SEED, widget="seed"),
    steps: int = Input(20, ge=1, le=1000),
    cfg: float = Input(7.0, ge=0.0, le=100.0, step=0.1),
    sampler_name: str = Input("euler", choices=list(SAMPLER_NAMES)),
    scheduler: str = Input("normal", choices=list(SCHEDULE_NAMES)),
    denoise: float = Input(1.0, gt=0.0, le=1.0, step=0.01),
) -> Any:
    """Denoise `latent` for `steps` steps with classifier-free guidance (`cfg`; the negative
    defaults to the empty prompt). At `denoise` 1 only the latent's size (and noise mask)
    matter, as in diffusers' pipelines; with `denoise` < 1 the latent is an encoded image that
    is partly re-noised (image-to-image). A latent with a noise mask is inpainted: outside the
    mask it is kept. Noise comes from a CPU generator seeded by `seed`."""
    return sample(
        ctx,
        model,
        positive,
        negative,
        latent,
        seed=seed,
        steps=steps,
        cfg=cfg,
        sampler_name=sampler_name,
        scheduler=scheduler,
        denoise=denoise,
    )


@node(category="sampling", outputs={"latent": Latent}, check=_check_pair)
def KSamplerAdvanced(
    ctx: Context,
    model: Model,
    positive: Conditioning,
    negative: Conditioning | None = None,
    *,
    latent: Latent,
    add_noise: bool = True,
    seed: int = Input(0, ge=0, le=MAX_SEED, widget="seed"),
    steps: int = Input(20, ge=1, le=1000),
    cfg: float = Input(7.0, ge=0.0, le=100.0, step=0.1),
    sampler_name: str = Input("euler", choices=list(SAMPLER_NAMES)),
    scheduler: str = Input("normal", choices=list(SCHEDULE_NAMES)),
    start_at_step: int = Input(0, ge=0, le=10000),
    end_at_step: int = Input(10000, ge=0, le=10000),
    return_with_leftover_noise: bool = False,
) -> Any:
    """Run steps `start_at_step` to `end_at_step` of a `steps`-step schedule (ComfyUI's
    KSamplerAdvanced): SDXL base -> refiner splits one schedule between two models. The
    latent is used as it is (noised to the start step when `add_noise`); ending early with
    `return_with_leftover_noise` hands the partly denoised latent on, else the last step
    denoises fully. Starting at or after the end returns the latent unchanged."""
    from easel.models.sampling import Window

    last = min(end_at_step, steps)
    if start_at_step >= last:
        return dict(latent)
    window = Window(start_at_step, last, add_noise, return_with_leftover_noise)
    return sample(
        ctx,
        model,
        positive,
        negative,
        latent,
        seed=seed,
        steps=steps,
        cfg=cfg,
        sampler_name=sampler_name,
        scheduler=scheduler,
        window=window,
    )


PREDICTIONS = {"eps": "epsilon", "v_prediction": "v_prediction"}


@node(category="advanced/model", outputs={"model": Model})
def ModelSamplingDiscrete(
    model: Model,
    sampling: str = Input("eps", choices=list(PREDICTIONS)),
    zsnr: bool = False,
) -> Any:
    """Override what the model predicts (noise `eps` or `v_prediction`), for checkpoints
    whose file does not say, and rescale the schedule to zero terminal SNR (`zsnr`, for
    models trained so)."""
    overrides: dict[str, Any] = {"prediction_type": PREDICTIONS[sampling]}
    if zsnr:
        overrides["rescale_betas_zero_snr"] = True
    return model.with_sampling(**overrides)


NODES = [KSampler, KSamplerAdvanced, ModelSamplingDiscrete]
