"""Every sampler x schedule pair: the table agrees with diffusers, valid pairs sample, and
impossible pairs are validation errors."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch

from easel.core.context import Context
from easel.core.graph import WorkflowError
from easel.nodes.samplers_table import SAMPLERS, SCHEDULES, pair_problem, scheduler_spec
from tests.nodes.workflows import txt2img

PAIRS = [(s, k) for s in SAMPLERS for k in SCHEDULES]
VALID = [p for p in PAIRS if pair_problem(*p) is None]
REFUSED = [p for p in PAIRS if pair_problem(*p) is not None]


def test_table_matches_the_scheduler_signatures() -> None:
    import diffusers

    for sampler, schedule in PAIRS:
        cls = getattr(diffusers, SAMPLERS[sampler].scheduler_class)
        accepted = inspect.signature(cls.__init__).parameters
        option_names = set(SCHEDULES[schedule])
        assert (pair_problem(sampler, schedule) is None) == (option_names <= set(accepted)), (
            sampler,
            schedule,
        )
    assert len(VALID) == 69 and len(REFUSED) == 9


@pytest.fixture(scope="module")
def conditioned(tiny_manager: Any) -> dict[str, Any]:
    from easel.nodes.conditioning import TextEncode

    model, clip, _ = tiny_manager.load_checkpoint("tiny-shapes")
    ctx = Context()

    def encode(text: str) -> Any:
        return TextEncode.call(ctx, {"clip": clip, "text": text})["conditioning"]

    return {"model": model, "positive": encode("a red circle"), "negative": encode("blue")}


def sample(conditioned: dict[str, Any], **settings: Any) -> torch.Tensor:
    from easel.nodes.latent import EmptyLatent
    from easel.nodes.sampling import KSampler

    latent = EmptyLatent.call(
        Context(), {"width": 16, "height": 16, "batch_size": 1, "vae": conditioned["model"].vae}
    )["latent"]
    kwargs = {
        "seed": 1,
        "steps": 2,
        "cfg": 4.0,
        "sampler_name": "euler",
        "scheduler": "normal",
        "denoise": 1.0,
        **settings,
    }
    return KSampler.call(Context(), {**conditioned, "latent": latent, **kwargs})["latent"][
        "samples"
    ]


@pytest.mark.parametrize(("sampler", "schedule"), VALID)
def test_valid_pair_samples(conditioned: dict[str, Any], sampler: str, schedule: str) -> None:
    samples = sample(conditioned, sampler_name=sampler, scheduler=schedule, cfg=1.0)
    assert samples.shape == (1, 4, 8, 8)
    assert torch.isfinite(samples).all()
    class_name, options = scheduler_spec(sampler, schedule)
    assert class_name == SAMPLERS[sampler].scheduler_class
    assert options.items() >= SCHEDULES[schedule].items()


@pytest.mark.parametrize(("sampler", "schedule"), REFUSED)
def test_refused_pair_is_a_validation_error(run_workflow: Any, sampler: str, schedule: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        run_workflow.executor.validate(
            {
                "format": "easel.workflow",
                "version": 1,
                "nodes": txt2img(sampler_name=sampler, scheduler=schedule),
            },
            ["dec"],
        )
    text = str(caught.value)
    assert "scheduler" in text and sampler in text and schedule in text


def test_same_seed_same_latent_other_seed_other_latent(conditioned: dict[str, Any]) -> None:
    for sampler in ("euler_ancestral", "dpmpp_2m_sde", "dpmpp_3m_sde"):  # noise per step
        first = sample(conditioned, seed=5, sampler_name=sampler)
        again = sample(conditioned, seed=5, sampler_name=sampler)
        other = sample(conditioned, seed=6, sampler_name=sampler)
        assert torch.equal(first, again), sampler
        assert not torch.allclose(first, other), sampler


def test_guidance_changes_the_result(conditioned: dict[str, Any]) -> None:
    assert not torch.allclose(sample(conditioned, cfg=1.0), sample(conditioned, cfg=8.0))
