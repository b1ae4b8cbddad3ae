"""The sampler side of ControlNets: which steps a percent range covers, residuals summed over a
chain, the hint prepared once at the latent's size, both guidance sides in one batch, and
errors that name the ControlNet."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from easel.models.controlnet import (
    Control,
    ControlNetHandle,
    control_for_uncond,
    control_residuals,
    prepare_hint,
)
from tests.models.test_controlnet_loading import example_inputs, tiny_controlnet


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: see test_controlnet_loading.one_thread
    yield
    torch.set_num_threads(before)


class Counting:
    """A ControlNetModel wrapper recording each call's batch size and timestep."""

    def __init__(self, model: Any) -> None:
        self.model, self.calls = model, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def __call__(self, sample: Any, t: Any, **kwargs: Any) -> Any:
        self.calls.append((sample.shape[0], float(t)))
        return self.model(sample, t, **kwargs)


@pytest.fixture(scope="module")
def net() -> Any:
    return tiny_controlnet("sd1", seed=30)


def handle(model: Any, name: str = "cn") -> ControlNetHandle:
    return ControlNetHandle(name, model, manager=None)


def hint(seed: int = 0, size: int = 16) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_percent_range_is_measured_on_the_timesteps_as_comfyui_does(net: Any) -> None:
    control = Control(handle(net), hint(), 1.0, start=0.3, end=0.7)
    # active for (1 - 0.7) * 999 = 299.7 <= t <= (1 - 0.3) * 999 = 699.3
    assert [control.active(torch.tensor(t)) for t in (999, 700, 699, 500, 300, 299, 0)] == [
        False,
        False,
        True,
        True,
        True,
        False,
        False,
    ]
    whole = Control(handle(net), hint(), 1.0)
    assert whole.active(999.0) and whole.active(0.0)
    assert not Control(handle(net), hint(), 1.0, start=1.0, end=1.0).active(0.5)


def test_residuals_sum_over_the_chain_each_scaled_by_its_strength(net: Any) -> None:
    other = tiny_controlnet("sd1", seed=31)
    inputs = example_inputs(net)
    x, t, text = inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"]
    a = Control(handle(net, "a"), hint(1), 0.8)
    b = Control(handle(other, "b"), hint(2), 0.5)
    both = control_residuals([a, b], x, t, text, None, 0, 1)
    with torch.no_grad():
        down_a, mid_a = net(
            x,
            t,
            encoder_hidden_states=text,
            controlnet_cond=a.hint_for(2, 8, 8, "cpu", torch.float32),
            conditioning_scale=0.8,
            return_dict=False,
        )
        down_b, mid_b = other(
            x,
            t,
            encoder_hidden_states=text,
            controlnet_cond=b.hint_for(2, 8, 8, "cpu", torch.float32),
            conditioning_scale=0.5,
            return_dict=False,
        )
    assert len(both["down_block_additional_residuals"]) == len(down_a) == 4
    for ours, first, second in zip(
        both["down_block_additional_residuals"], down_a, down_b, strict=True
    ):
        assert torch.allclose(ours, first + second, atol=1e-6)
    assert torch.allclose(both["mid_block_additional_residual"], mid_a + mid_b, atol=1e-6)
    late = Control(handle(other, "b"), hint(2), 0.5, start=0.9)  # only t <= 99.9
    only_a = control_residuals([a, late], x, t, text, None, 0, 1)
    assert torch.allclose(only_a["mid_block_additional_residual"], mid_a, atol=1e-6)
    assert control_residuals([late], x, t, text, None, 0, 1) == {}


def test_the_hint_is_cropped_resized_and_prepared_once(net: Any) -> None:
    wide = torch.zeros(1, 3, 10, 20)
    wide[:, :, :, 5:15] = 1.0  # the centre square is white
    assert torch.equal(prepare_hint(wide, 4, 4, 3), torch.ones(1, 3, 4, 4))
    grey = prepare_hint(torch.full((2, 1, 6, 6), 0.5), 12, 12, 3)
    assert grey.shape == (2, 3, 12, 12) and bool((grey == 0.5).all())
    with pytest.raises(ValueError, match="3-channel hints but the image has 2"):
        prepare_hint(torch.zeros(1, 2, 4, 4), 4, 4, 3)
    control = Control(handle(net), hint(size=40), 1.0)
    first = control.hint_for(4, 8, 8, "cpu", torch.float32)
    assert first.shape == (4, 3, 16, 16)  # the latent's 8x8 times the hint encoder's 2
    assert control.hint_for(4, 8, 8, "cpu", torch.float32) is first


def test_a_controlnet_of_another_family_is_named_in_the_error(net: Any) -> None:
    inputs = example_inputs(net)
    control = Control(handle(net, "canny.safetensors"), hint(), 1.0)
    with pytest.raises(
        ValueError,
        match=r"'canny\.safetensors' expects text embeddings of "
        r"width 16 but the conditioning has 2048",
    ):
        control_residuals([control], inputs["sample"], 500, torch.zeros(2, 77, 2048), None, 0, 1)
    xl = Control(handle(tiny_controlnet("sdxl", seed=32), "xl"), hint(), 1.0)
    with pytest.raises(ValueError, match="'xl' is an SDXL ControlNet"):
        control_residuals([xl], inputs["sample"], 500, inputs["encoder_hidden_states"], None, 0, 1)


def test_an_inpainting_unet_input_gives_the_controlnet_the_noisy_latent(net: Any) -> None:
    inputs = example_inputs(net)
    x, text = inputs["sample"], inputs["encoder_hidden_states"]
    control = Control(handle(net), hint(), 1.0)
    nine = torch.cat([x, torch.rand(2, 5, 8, 8)], dim=1)
    a = control_residuals([control], nine, 500, text, None, 0, 1)
    b = control_residuals([control], x, 500, text, None, 0, 1)
    assert torch.equal(a["mid_block_additional_residual"], b["mid_block_additional_residual"])


def test_an_uncond_without_a_chain_takes_the_positive_one_from_controlnet_apply() -> None:
    chain = ["control"]
    assert control_for_uncond({"control": chain, "control_apply_to_uncond": True}, {}) is chain
    assert control_for_uncond({"control": chain}, {}) is None  # ControlNetApplyAdvanced
    own = ["own"]
    assert (
        control_for_uncond({"control": chain, "control_apply_to_uncond": True}, {"control": own})
        is own
    )


def test_the_sampler_runs_a_shared_chain_once_for_both_sides(net: Any) -> None:
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel

    from easel.models.sampling import denoise

    torch.manual_seed(33)
    unet = UNet2DConditionModel(
        sample_size=8,
        layers_per_block=1,
        block_out_channels=(32, 64),
        attention_head_dim=8,
        cross_attention_dim=16,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    ).eval()
    counting = Counting(net)
    control = Control(handle(counting), hint(), 1.0, start=0.5)  # t <= 499.5 only
    chain = [control]
    text = torch.randn(1, 5, 16)
    positive = {"embeds": text, "control": chain}
    negative = {"embeds": torch.zeros(1, 5, 16), "control": chain}

    def run(neg: dict[str, Any]) -> Any:
        scheduler = EulerDiscreteScheduler(timestep_spacing="leading", steps_offset=1)
        return denoise(
            unet,
            scheduler,
            noise=torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)),
            positive=positive,
            negative=neg,
            cfg=5.0,
            steps=4,
        )

    stacked = run(negative)
    assert counting.calls == [(2, 251.0), (2, 1.0)]  # 751 and 501 are before the range
    counting.calls.clear()
    separate = run({**negative, "control": [control]})  # an equal but distinct chain
    assert counting.calls == [(1, 251.0), (1, 251.0), (1, 1.0), (1, 1.0)]
    assert torch.allclose(stacked, separate, rtol=1e-5, atol=1e-4)  # values reach 40


def test_a_half_precision_controlnet_gives_residuals_in_the_sampler_dtype(tmp_path: Any) -> None:
    from easel.models.controlnet import load_controlnet
    from tests.models.test_controlnet_loading import write_single_file

    original = tiny_controlnet("sd1", seed=34)
    path = write_single_file(original, tmp_path / "cn.safetensors")
    half = load_controlnet(path, torch.bfloat16)
    assert next(half.parameters()).dtype == torch.bfloat16
    inputs = example_inputs(original)
    x, text = inputs["sample"], inputs["encoder_hidden_states"]
    ours = control_residuals([Control(handle(half), hint(), 1.0)], x, 500, text, None, 0, 1)
    full = control_residuals([Control(handle(original), hint(), 1.0)], x, 500, text, None, 0, 1)
    mid = ours["mid_block_additional_residual"]
    assert mid.dtype == torch.float32
    assert torch.allclose(mid, full["mid_block_additional_residual"], rtol=0.1, atol=0.1)
