"""ModelAttentionBackend: the model's network runs under diffusers' attention_backend (its
dispatcher's active backend), restored after the run; a backend whose package is missing is a
NodeError naming the input."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch

from easel.core.context import Context
from easel.core.node import NodeError
from easel.models.handles import ModelHandle
from easel.nodes.attention_backend import ModelAttentionBackend
from tests.families.test_flux_parity import split_workflow
from tests.fixtures import flux_family


def _active() -> Any:
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    return _AttentionBackendRegistry.get_active_backend()[0]


# the session fixtures of the tiny Flux models (shared with the Flux family tests: in a full run
# they are built once for all of them)
flux_root = flux_family.flux_root
flux_models = flux_family.flux_models
flux_manager = flux_family.flux_manager
run_flux = flux_family.run_flux


@pytest.fixture
def run(run_flux: Any) -> Any:
    """Runs Flux.1 dev from ComfyUI's split files, its model through ModelAttentionBackend
    when `attention` is given."""

    def go(attention: str | None) -> Any:
        nodes = split_workflow("dev", steps=2)
        if attention is not None:
            nodes["attn"] = {
                "type": "ModelAttentionBackend",
                "inputs": {"model": ["unet", "model"], "attention": attention},
            }
            nodes["k"]["inputs"]["model"] = ["attn", "model"]
        return run_flux(nodes, ["dec"])

    return go


def test_backends_give_the_default_image_and_are_restored(
    run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    before = _active()
    default = run(None)
    assert default.status == "succeeded", default.failures
    baseline = default.values["dec"]["image"]
    assert float(baseline.std()) > 0.01

    native = run("pytorch attention")
    assert native.status == "succeeded", native.failures
    assert torch.equal(native.values["dec"]["image"], baseline)
    assert _active() == before

    # the math backend is the one the transformer's attention calls while the model runs
    math = AttentionBackendName._NATIVE_MATH
    calls = []
    original = _AttentionBackendRegistry._backends[math]

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(_active())
        return original(*args, **kwargs)

    monkeypatch.setitem(_AttentionBackendRegistry._backends, math, counted)
    result = run("pytorch math attention")
    assert result.status == "succeeded", result.failures
    assert calls and set(calls) == {math}
    assert (result.values["dec"]["image"] - baseline).abs().max().item() <= 1e-5
    assert _active() == before


def _handle() -> ModelHandle:
    return ModelHandle("m", unet=None, scheduler_config={}, vae_scale_factor=8, manager=None)


def test_a_missing_backend_is_a_node_error() -> None:
    missing = [
        choice
        for choice, package in (
            ("sage attention", "sageattention"),
            ("flash attention", "flash_attn"),
            ("xformers attention", "xformers"),
        )
        if importlib.util.find_spec(package) is None
    ]
    if not missing:
        pytest.skip("sageattention, flash-attn and xformers are all installed here")
    with pytest.raises(NodeError) as caught:
        ModelAttentionBackend.call(Context(), {"model": _handle(), "attention": missing[0]})
    assert caught.value.input == "attention"
    assert "install" in str(caught.value)


def test_comfy_kitchen_attention_is_native_with_a_warning() -> None:
    seen: list[str] = []
    ctx = Context(on_warning=seen.append)
    out = ModelAttentionBackend.call(
        ctx, {"model": _handle(), "attention": "comfy kitchen attention"}
    )
    assert out["model"].attention == "native"
    assert any("comfy kitchen" in message for message in seen)
