"""Anima's ControlNet-LLLite (ModelPatchLoader + AnimaLLLiteApply): Easel's hand-written
implementation against a direct computation from the file's tensors (torch.nn.functional
written out in this test, the v2 layout's formulas), and the node's strength and schedule
window in a workflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from tests.families.test_anima_parity import split_workflow
from tests.families.workflows import image_of
from tests.fixtures import anima_family

anima_models = anima_family.anima_models
anima_manager = anima_family.anima_manager
run_anima = anima_family.run_anima

C = "lllite_conditioning1."
LINEARS = {
    "self_attn_q_proj": "attn1.to_q",
    "self_attn_k_proj": "attn1.to_k",
    "self_attn_v_proj": "attn1.to_v",
    "cross_attn_q_proj": "attn2.to_q",
    "mlp_layer1": "ff.net.0.proj",
}


def _gn(s: dict[str, Any], x: Any, name: str) -> Any:
    channels = x.shape[1]
    groups = 8
    while groups > 1 and channels % groups:
        groups //= 2
    return F.group_norm(x, groups, s[name + ".weight"], s[name + ".bias"], eps=1e-5)


def _conv(s: dict[str, Any], x: Any, name: str, **kw: Any) -> Any:
    return F.conv2d(x, s[name + ".weight"], s[name + ".bias"], **kw)


def direct_embedding(s: dict[str, Any], pixels: Any, dilations: tuple[int, ...]) -> Any:
    """The conditioning network from the file's tensors: pixels [B, C, H, W] in [-1, 1]."""
    x = F.silu(_gn(s, _conv(s, pixels, C + "conv1", stride=4), C + "norm1"))
    x = F.silu(_gn(s, _conv(s, x, C + "conv2", padding=1), C + "norm2"))
    x = F.silu(_gn(s, _conv(s, x, C + "conv3", stride=4), C + "norm3"))
    r = C + "resblocks.0."
    h = _conv(s, F.silu(_gn(s, x, r + "norm1")), r + "conv1", padding=1)
    x = x + _conv(s, F.silu(_gn(s, h, r + "norm2")), r + "conv2", padding=1)
    if dilations:
        a = C + "aspp."
        outs = []
        for i, d in enumerate(dilations):
            kw = {} if d == 1 else {"padding": d, "dilation": d}
            outs.append(
                F.silu(_gn(s, _conv(s, x, f"{a}branches.{i}.0", **kw), f"{a}branches.{i}.1"))
            )
        pooled = x.mean(dim=(2, 3), keepdim=True)
        pooled = F.silu(_gn(s, _conv(s, pooled, a + "global_conv.0"), a + "global_conv.1"))
        outs.append(pooled.expand(-1, -1, *x.shape[-2:]))
        x = F.silu(_gn(s, _conv(s, torch.cat(outs, dim=1), a + "proj.0"), a + "proj.1"))
    tokens = _conv(s, x, C + "proj").flatten(2).transpose(1, 2)
    width = tokens.shape[-1]
    return F.layer_norm(tokens, (width,), s[C + "out_norm.weight"], s[C + "out_norm.bias"])


def direct_delta(s: dict[str, Any], m: str, x: Any, embedding: Any) -> Any:
    c = embedding + s[m + "depth_embed"]
    h = F.silu(F.linear(x, s[m + "down.weight"], s[m + "down.bias"]))
    gamma, beta = F.linear(c, s[m + "cond_to_film.weight"], s[m + "cond_to_film.bias"]).chunk(2, -1)
    h = F.linear(torch.cat([c, h], dim=-1), s[m + "mid.weight"], s[m + "mid.bias"])
    h = F.silu(h * (1 + gamma) + beta)
    return F.linear(h, s[m + "up.weight"], s[m + "up.bias"])


def direct_call(transformer: Any, s: dict[str, Any], embedding: Any, strength: float, **kw: Any):
    """The transformer with each targeted Linear's input x replaced by x + delta * strength."""
    handles = []
    for name in {k.split(".", 1)[0] for k in s if k.startswith("lllite_dit_blocks_")}:
        _, _, _, block, target = name.split("_", 4)
        linear = transformer.transformer_blocks[int(block)].get_submodule(LINEARS[target])

        def hook(_: Any, inputs: Any, m: str = name + ".") -> Any:
            return (inputs[0] + direct_delta(s, m, inputs[0], embedding) * strength,)

        handles.append(linear.register_forward_pre_hook(hook))
    try:
        return transformer(**kw)[0]
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("kind", ["control", "inpaint"])
def test_lllite_equals_a_direct_computation_from_the_file(anima_models: Any, kind: str) -> None:
    from easel.models.anima_lllite import AnimaLLLiteControl
    from easel.models.model_patches import ANIMA_LLLITE, load_model_patch

    path = anima_models.root / "models" / anima_family.LLLITE_FILES[kind]
    found, module = load_model_patch(path, torch.float32)
    assert found == ANIMA_LLLITE
    s = load_file(str(path))
    generator = torch.Generator().manual_seed(3)
    image = torch.rand(1, 3, 64, 64, generator=generator)  # the latent's size times 8
    mask = (torch.rand(1, 64, 64, generator=generator) > 0.5).float()
    pixels = image * 2 - 1
    if kind == "inpaint":  # the masked pixels blanked (inpaint_masked_input), the mask after
        pixels = torch.cat([pixels * (1 - mask[:, None]), mask[:, None] * 2 - 1], dim=1)
    embedding = direct_embedding(s, pixels, (1, 2) if kind == "control" else ())
    kw = {
        "hidden_states": torch.randn(1, 16, 1, 8, 8, generator=generator),
        "timestep": torch.tensor([0.5]),
        "encoder_hidden_states": torch.randn(1, 512, anima_family.CONTEXT, generator=generator),
        "padding_mask": torch.zeros(1, 1, 8, 8),
        "return_dict": False,
    }
    transformer = anima_models.transformer
    control = AnimaLLLiteControl(module, image, mask, 0.7, 1.0, 0.0)
    with torch.no_grad():
        ours = control.wrap(transformer, transformer)(**kw)[0]
        theirs = direct_call(transformer, s, embedding, 0.7, **kw)
        plain = transformer(**kw)[0]
    assert (ours - theirs).abs().max().item() <= 1e-5
    assert (ours - plain).abs().max().item() > 1e-2


def lllite_workflow(strength: float, start: float = 0.0, end: float = 1.0) -> dict[str, Any]:
    nodes = split_workflow()
    nodes["patch"] = {
        "type": "ModelPatchLoader",
        "inputs": {"name": Path(anima_family.LLLITE_FILES["control"]).name},
    }
    nodes["control"] = {
        "type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "color": 0xFF8040},
    }
    nodes["apply"] = {
        "type": "AnimaLLLiteApply",
        "inputs": {
            "model": ["unet", "model"],
            "model_patch": ["patch", "model_patch"],
            "image": ["control", "image"],
            "strength": strength,
            "start_percent": start,
            "end_percent": end,
        },
    }
    nodes["k"]["inputs"]["model"] = ["apply", "model"]
    return nodes


@pytest.mark.slow
def test_strength_and_the_schedule_window(run_anima: Any) -> None:
    plain = image_of(run_anima(split_workflow(), ["dec"]))
    steered = image_of(run_anima(lllite_workflow(1.0), ["dec"]))
    off = image_of(run_anima(lllite_workflow(0.0), ["dec"]))
    late = image_of(run_anima(lllite_workflow(1.0, start=0.99, end=1.0), ["dec"]))
    assert (steered - plain).abs().max().item() > 1e-2
    assert torch.equal(off, plain)
    assert torch.equal(late, plain)  # no step's sigma is below sigma(99 %)


@pytest.mark.slow
def test_refusals_name_the_input(run_anima: Any) -> None:
    nodes = lllite_workflow(1.0)
    nodes["patch"]["inputs"]["name"] = Path(anima_family.LLLITE_FILES["inpaint"]).name
    result = run_anima(nodes, ["apply"])
    assert result.status != "succeeded"
    assert "mask" in str(result.failures)
