"""Sampler and scheduler names users know, as data: diffusers scheduler class + options.

A sampler is a diffusers scheduler class with fixed options; a scheduler (noise schedule)
is a set of options that class must accept. A pair works only if the class takes every
option of the schedule; `tests/nodes` checks this table against the real signatures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL = ("normal", "karras", "exponential", "sgm_uniform", "simple", "beta")
SPACING_ONLY = ("normal", "sgm_uniform", "simple")


@dataclass(frozen=True)
class Sampler:
    """One sampler: a diffusers scheduler class, its options and the schedules it supports."""

    scheduler_class: str
    options: dict[str, Any] = field(default_factory=dict)
    schedules: tuple[str, ...] = ALL
    seeded_by_config: str | None = None  # an option that takes the seed (no step generator)


SAMPLERS: dict[str, Sampler] = {
    "euler": Sampler("EulerDiscreteScheduler"),
    "euler_ancestral": Sampler("EulerAncestralDiscreteScheduler", schedules=SPACING_ONLY),
    "heun": Sampler("HeunDiscreteScheduler"),
    "dpm_2": Sampler("KDPM2DiscreteScheduler"),
    "dpm_2_ancestral": Sampler("KDPM2AncestralDiscreteScheduler"),
    "lms": Sampler("LMSDiscreteScheduler"),
    "dpmpp_2m": Sampler(
        "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}
    ),
    "dpmpp_2m_sde": Sampler(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}
    ),
    "dpmpp_3m_sde": Sampler(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}
    ),
    "dpmpp_sde": Sampler("DPMSolverSDEScheduler", seeded_by_config="noise_sampler_seed"),
    "ddim": Sampler("DDIMScheduler", schedules=SPACING_ONLY),
    "uni_pc": Sampler("UniPCMultistepScheduler"),
    "lcm": Sampler("LCMScheduler", schedules=SPACING_ONLY),
}

# "normal" keeps the model's own scheduler config (what its diffusers pipeline does).
SCHEDULES: dict[str, dict[str, Any]] = {
    "normal": {},
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
    "sgm_uniform": {"timestep_spacing": "trailing"},
    "simple": {"timestep_spacing": "linspace"},
    "beta": {"use_beta_sigmas": True},
}

# Flow-matching families (Flux): the same names, on diffusers' flow-matching schedulers. A
# scheduler without a resolution-dependent shift gets the equivalent fixed shift (exp(mu)).
FLOW_SAMPLERS: dict[str, Sampler] = {
    "euler": Sampler(
        "FlowMatchEulerDiscreteScheduler",
        schedules=("normal", "simple", "sgm_uniform", "karras", "exponential", "beta"),
    ),
    "heun": Sampler("FlowMatchHeunDiscreteScheduler", schedules=("normal",)),
    "dpmpp_2m": Sampler(
        "DPMSolverMultistepScheduler",
        {
            "algorithm_type": "dpmsolver++",
            "solver_order": 2,
            "use_flow_sigmas": True,
            "prediction_type": "flow_prediction",
        },
        schedules=("normal",),
    ),
    "dpmpp_2m_sde": Sampler(
        "DPMSolverMultistepScheduler",
        {
            "algorithm_type": "sde-dpmsolver++",
            "solver_order": 2,
            "use_flow_sigmas": True,
            "prediction_type": "flow_prediction",
        },
        schedules=("normal",),
    ),
    "dpmpp_3m_sde": Sampler(
        "DPMSolverMultistepScheduler",
        {
            "algorithm_type": "sde-dpmsolver++",
            "solver_order": 3,
            "use_flow_sigmas": True,
            "prediction_type": "flow_prediction",
        },
        schedules=("normal",),
    ),
    "uni_pc": Sampler(
        "UniPCMultistepScheduler",
        {"use_flow_sigmas": True, "prediction_type": "flow_prediction"},
        schedules=("normal",),
    ),
    # ComfyUI's res_multistep (Easel's own scheduler: diffusers has none); it steps only
    # through a schedule's levels, so every schedule goes that way (no schedule of its own)
    "res_multistep": Sampler("FlowResMultistepScheduler", schedules=()),
    "euler_ancestral": Sampler("FlowEulerAncestralScheduler", schedules=()),
    # ComfyUI's er_sde (ER-SDE-Solver-3; Easel's own scheduler: diffusers has none)
    "er_sde": Sampler("FlowERSDEScheduler", schedules=()),
    # ComfyUI's lcm on flow models: the denoised estimate, noised afresh to the next level
    "lcm": Sampler(
        "FlowMatchLCMScheduler",
        schedules=("normal", "simple", "sgm_uniform", "karras", "exponential", "beta"),
    ),
}
# "simple" and "sgm_uniform" are FluxPipeline's (and ComfyUI's) sigmas linspace(1, 1/n, n)
# before the shift; "normal" is the scheduler's own; the rest as above.
FLOW_SCHEDULES: dict[str, dict[str, Any]] = {
    "normal": {},
    "simple": {},
    "sgm_uniform": {},
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
    "beta": {"use_beta_sigmas": True},
}
LINEAR_FLOW_SCHEDULES = ("simple", "sgm_uniform")

# KSampler's choices: every name, the flow-only ones (res_multistep) last
SAMPLER_NAMES = (*SAMPLERS, *(name for name in FLOW_SAMPLERS if name not in SAMPLERS))
SCHEDULE_NAMES = tuple(SCHEDULES)


def pair_problem(sampler: str, schedule: str) -> str | None:
    """Why a sampler cannot run a schedule, or None when the pair works."""
    entry = SAMPLERS.get(sampler)
    if entry is None or schedule not in SCHEDULES:
        return None  # unknown names are reported by the choices check
    if schedule in entry.schedules:
        return None
    works = ", ".join(entry.schedules)
    return (
        f"sampler {sampler!r} ({entry.scheduler_class}) cannot use the {schedule!r} "
        f"schedule; it supports: {works}"
    )


def scheduler_spec(sampler: str, schedule: str) -> tuple[str, dict[str, Any]]:
    """(diffusers class name, options) for a supported pair."""
    problem = pair_problem(sampler, schedule)
    if problem:
        raise ValueError(problem)
    entry = SAMPLERS[sampler]
    return entry.scheduler_class, {**entry.options, **SCHEDULES[schedule]}


def flow_spec(sampler: str, schedule: str) -> tuple[str, dict[str, Any], bool]:
    """(diffusers class name, options, linear sigmas) for a pair on a flow-matching model;
    ValueError saying what works when the pair does not."""
    entry = FLOW_SAMPLERS.get(sampler)
    if entry is None:
        raise ValueError(
            f"sampler {sampler!r} has no flow-matching variant for this model "
            f"(flow models sample with: {', '.join(FLOW_SAMPLERS)})"
        )
    if schedule not in entry.schedules:
        raise ValueError(
            f"on a flow-matching model, sampler {sampler!r} "
            f"({entry.scheduler_class}) cannot use the {schedule!r} schedule; it "
            f"supports: {', '.join(entry.schedules)}"
        )
    return (
        entry.scheduler_class,
        {**entry.options, **FLOW_SCHEDULES[schedule]},
        schedule in LINEAR_FLOW_SCHEDULES,
    )
