"""LoRA files in every key format map to the same layers, and a bound LoRA never changes the
shared model: bit-identical base weights, concurrent strengths on one base, stacking, LoCon.

The builders here (random LoRAs in the kohya, PEFT, LDM and old diffusers layouts) are shared
with the node and parity tests.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.fixtures.tiny_models import _ldm_unet_key, _unet_kwargs, text_config

Layers = dict[str, tuple[torch.Tensor, torch.Tensor]]


# -- builders -----------------------------------------------------------------------------
def lora_targets(module: nn.Module, *, convs: bool = True) -> dict[str, nn.Module]:
    """The Linear (and 3x3/1x1 Conv2d) layers a LoRA of `module` patches: attention, feed
    forward, projections, resnet convs and time embeddings; not the resamplers or conv_in/out."""
    out = {}
    for name, sub in module.named_modules():
        if not isinstance(sub, nn.Linear | nn.Conv2d) or (not convs and isinstance(sub, nn.Conv2d)):
            continue
        if "samplers" in name or name in ("conv_in", "conv_out"):
            continue
        out[name] = sub
    return out


def random_lora(
    targets: dict[str, nn.Module], *, rank: int = 2, seed: int = 0, size: float = 0.3
) -> Layers:
    """{layer: (down, up)}: linear [r, in] / [out, r]; conv (LoCon) [r, in, kh, kw] /
    [out, r, 1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    layers: Layers = {}
    for name, sub in sorted(targets.items()):
        weight = sub.weight
        down = torch.randn(rank, *weight.shape[1:], generator=gen) * size
        up_shape = (weight.shape[0], rank) + (1,) * (weight.dim() - 2)
        layers[name] = (down, torch.randn(*up_shape, generator=gen) * size)
    return layers


def file_name(component: str, name: str) -> str:
    """A layer's name as files write it: text encoders under "text_model." (transformers 5's
    CLIPTextModel names its modules without it; CLIPTextModelWithProjection with it)."""
    if component == "unet" or name.startswith(("text_model.", "text_projection")):
        return name
    return "text_model." + name


def peft_state_dict(unet: Layers, te: Layers, te2: Layers | None = None) -> dict[str, Any]:
    """diffusers' PEFT layout: `unet.<module>.lora_A.weight`, `text_encoder.<module>...`."""
    out = {}
    for prefix, layers in (("unet", unet), ("text_encoder", te), ("text_encoder_2", te2 or {})):
        for name, (down, up) in layers.items():
            name = file_name(prefix, name)
            out[f"{prefix}.{name}.lora_A.weight"] = down
            out[f"{prefix}.{name}.lora_B.weight"] = up
    return out


def kohya_state_dict(
    unet: Layers,
    te: Layers,
    te2: Layers | None = None,
    *,
    alpha: float | None = 1.0,
    ldm_layers_per_block: int | None = None,
    te_prefix: str = "lora_te_",
) -> dict[str, Any]:
    """kohya's layout: `lora_unet_<module with _>.lora_down.weight` and `.alpha`; with
    `ldm_layers_per_block` the UNet names are the original LDM ones (input_blocks_1_1_...)."""
    out = {}
    for prefix, layers in (("lora_unet_", unet), (te_prefix, te), ("lora_te2_", te2 or {})):
        for name, (down, up) in layers.items():
            if prefix == "lora_unet_" and ldm_layers_per_block is not None:
                name = _ldm_unet_key(name + ".weight", ldm_layers_per_block)[: -len(".weight")]
            name = file_name("unet" if prefix == "lora_unet_" else "te", name)
            key = prefix + name.replace(".", "_")
            out[key + ".lora_down.weight"] = down
            out[key + ".lora_up.weight"] = up
            if alpha is not None:
                out[key + ".alpha"] = torch.tensor(alpha)
    return out


def ldm_state_dict(unet: Layers, te: Layers, layers_per_block: int) -> dict[str, Any]:
    """ComfyUI's own layout: `diffusion_model.<LDM path>.lora_up.weight` for the UNet and
    `text_encoders.clip_l.transformer.<HF path>` for the text encoder."""
    out = {}
    for name, (down, up) in unet.items():
        ldm = _ldm_unet_key(name + ".weight", layers_per_block)[: -len(".weight")]
        out[f"diffusion_model.{ldm}.lora_down.weight"] = down
        out[f"diffusion_model.{ldm}.lora_up.weight"] = up
    for name, (down, up) in te.items():
        name = file_name("text_encoder", name)
        out[f"text_encoders.clip_l.transformer.{name}.lora_down.weight"] = down
        out[f"text_encoders.clip_l.transformer.{name}.lora_up.weight"] = up
    return out


def old_diffusers_state_dict(unet: Layers, te: Layers) -> dict[str, Any]:
    """diffusers' attention-processor layout (`attn1.processor.to_q_lora.down.weight`)."""
    out = {}
    for name, (down, up) in unet.items():
        parent, _, leaf = name.rpartition(".")
        if leaf in ("to_q", "to_k", "to_v"):
            stem = f"unet.{parent}.processor.{leaf}_lora"
        elif name.endswith("to_out.0"):
            stem = f"unet.{name[: -len('.to_out.0')]}.processor.to_out_lora"
        else:
            stem = f"unet.{name}.lora"
        out[f"{stem}.down.weight"] = down
        out[f"{stem}.up.weight"] = up
    for name, (down, up) in te.items():
        name = file_name("text_encoder", name)
        out[f"text_encoder.{name}.lora_linear_layer.down.weight"] = down
        out[f"text_encoder.{name}.lora_linear_layer.up.weight"] = up
    return out


def save(state_dict: dict[str, Any], path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    return path


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def unet() -> Any:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(**_unet_kwargs()).eval()


@pytest.fixture(scope="module")
def text_encoder() -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(2)
    return CLIPTextModel(CLIPTextConfig(**text_config(100))).eval()


@pytest.fixture(scope="module")
def layers(unet: Any, text_encoder: Any) -> tuple[Layers, Layers]:
    return random_lora(lora_targets(unet), seed=1), random_lora(lora_targets(text_encoder), seed=2)


def unet_inputs(seed: int = 0) -> tuple[torch.Tensor, int, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, 4, 8, 8, generator=gen), 10, torch.randn(1, 77, 8, generator=gen)


def run_unet(model: Any, seed: int = 0) -> torch.Tensor:
    x, t, ehs = unet_inputs(seed)
    with torch.inference_mode():
        return model(x, t, encoder_hidden_states=ehs).sample


def run_text(model: Any) -> torch.Tensor:
    ids = torch.arange(2, 79).remainder(90).unsqueeze(0)
    with torch.inference_mode():
        return model(ids).last_hidden_state


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# -- formats ------------------------------------------------------------------------------
def test_every_key_format_reads_to_the_same_layers(
    tmp_path: Path, unet: Any, text_encoder: Any, layers: tuple[Layers, Layers]
) -> None:
    from easel.models.lora import load_lora

    unet_layers, te_layers = layers
    files = {
        "peft": peft_state_dict(unet_layers, te_layers),
        "kohya": kohya_state_dict(unet_layers, te_layers, alpha=None),
        "kohya_ldm": kohya_state_dict(unet_layers, te_layers, alpha=None, ldm_layers_per_block=1),
        "comfy_ldm": ldm_state_dict(unet_layers, te_layers, layers_per_block=1),
        "old_diffusers": old_diffusers_state_dict(unet_layers, te_layers),
    }
    assert len(unet_layers) > 50 and len(te_layers) == 12
    # the names real files carry
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in files["kohya"]
    assert (
        "lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q.lora_up.weight"
        in files["kohya_ldm"]
    )
    assert "text_encoder.text_model.encoder.layers.1.mlp.fc2.lora_A.weight" in files["peft"]
    assert any(down.dim() == 4 and down.shape[-1] == 3 for down, _ in unet_layers.values())
    for label, state_dict in files.items():
        weights = load_lora(save(state_dict, tmp_path / f"{label}.safetensors"))
        assert weights.unknown == (), label
        for component, module, expected in (
            ("unet", unet, unet_layers),
            ("text_encoder", text_encoder, te_layers),
        ):
            resolved = weights.resolve(component, module)
            assert resolved.problems() == [], (label, component)
            assert set(resolved.layers) == set(expected), (label, component)
            for path, (layer,) in resolved.layers.items():
                # the very tensors written for that module: names mapped to the right layer
                assert torch.equal(layer.down, expected[path][0]), (label, path)
                assert torch.equal(layer.up, expected[path][1]), (label, path)
                assert layer.scale == 1.0


def test_kohya_alpha_scales_by_alpha_over_rank(
    tmp_path: Path, unet: Any, layers: tuple[Layers, Layers]
) -> None:
    from easel.models.lora import load_lora, merged_weights

    unet_layers, _ = layers
    path = save(kohya_state_dict(unet_layers, {}, alpha=1.0), tmp_path / "alpha.safetensors")
    weights = load_lora(path)
    merged = merged_weights(unet, "unet", ((weights, 0.8),))
    modules = dict(unet.named_modules())
    checked = 0
    for name, (down, up) in unet_layers.items():
        sub = modules[name]
        delta = (up.flatten(1) @ down.flatten(1)).reshape(sub.weight.shape)
        expected = sub.weight + 0.8 * (1.0 / 2) * delta  # alpha 1, rank 2
        torch.testing.assert_close(merged[sub], expected, rtol=0, atol=1e-6)
        checked += sub.weight.dim() == 4 and sub.weight.shape[-1] == 3  # LoCon 3x3 convs
    assert checked >= 4


def test_peft_metadata_alpha(tmp_path: Path, unet: Any, layers: tuple[Layers, Layers]) -> None:
    """diffusers writes PEFT's lora_alpha into the file's metadata: scale = lora_alpha / r."""
    import json

    from safetensors.torch import save_file

    from easel.models.lora import load_lora

    unet_layers, _ = layers
    state_dict = {k: v.contiguous() for k, v in peft_state_dict(unet_layers, {}).items()}
    path = tmp_path / "meta.safetensors"
    save_file(
        state_dict,
        str(path),
        metadata={
            "lora_adapter_metadata": json.dumps(
                {"unet.r": 2, "unet.lora_alpha": 4, "unet.alpha_pattern": {"conv1": 1}}
            )
        },
    )
    resolved = load_lora(path).resolve("unet", unet)
    scales = {name: layer.scale for name, (layer,) in resolved.layers.items()}
    assert scales["down_blocks.0.attentions.0.proj_in"] == 2.0
    assert scales["down_blocks.0.resnets.0.conv1"] == 0.5


def test_unreadable_and_unknown(tmp_path: Path, unet: Any, layers: tuple[Layers, Layers]) -> None:
    from easel.models.errors import ModelError, UnsafePickleError
    from easel.models.lora import load_lora

    with pytest.raises(ModelError, match=re.escape("not-a-lora.safetensors has no LoRA layer")):
        load_lora(
            save(
                {"model.diffusion_model.x.weight": torch.zeros(2)},
                tmp_path / "not-a-lora.safetensors",
            )
        )
    with pytest.raises(ModelError, match=re.escape("missing.safetensors cannot be read")):
        load_lora(tmp_path / "missing.safetensors")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 16)
    with pytest.raises(ModelError, match=re.escape("broken.safetensors is not a readable")):
        load_lora(broken)
    pickled = tmp_path / "old.pt"
    torch.save({"lora_unet_x.lora_down.weight": torch.zeros(1, 1)}, str(pickled))
    with pytest.raises(UnsafePickleError):
        load_lora(pickled)

    unet_layers, _ = layers
    state_dict = kohya_state_dict(unet_layers, {})
    state_dict["lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_a"] = torch.zeros(2, 2)
    state_dict["lora_unet_mid_block_attentions_0_proj_in.dora_scale"] = torch.zeros(1, 8)
    state_dict["something_else.weight"] = torch.zeros(1)
    state_dict["lora_unet_not_a_layer.lora_down.weight"] = torch.zeros(2, 4)
    state_dict["lora_unet_not_a_layer.lora_up.weight"] = torch.zeros(4, 2)
    weights = load_lora(save(state_dict, tmp_path / "mixed.safetensors"), name="mixed")
    assert len(weights.unknown) == 3
    assert weights.warnings() == [
        "LoRA 'mixed': 3 keys are not LoRA layers Easel reads and were skipped "
        "(lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_a, "
        "lora_unet_mid_block_attentions_0_proj_in.dora_scale, something_else.weight)"
    ]
    resolved = weights.resolve("unet", unet)
    assert resolved.missing == ("lora_unet_not_a_layer",)
    assert len(resolved.layers) == len(unet_layers)
    assert resolved.problems() == [
        "1 LoRA layers have no matching layer in the model (lora_unet_not_a_layer)"
    ]


# -- applying -----------------------------------------------------------------------------
def test_bound_lora_changes_outputs_not_the_shared_weights(
    tmp_path: Path, unet: Any, text_encoder: Any, layers: tuple[Layers, Layers]
) -> None:
    from easel.models.lora import PatchedModule, bind, load_lora

    weights = load_lora(save(kohya_state_dict(*layers), tmp_path / "k.safetensors"))
    before_unet, before_te = snapshot(unet), snapshot(text_encoder)
    base_out, base_text = run_unet(unet), run_text(text_encoder)

    patched_unet = bind(unet, "unet", ((weights, 1.0),))
    patched_te = bind(text_encoder, "text_encoder:", ((weights, 1.0),))
    assert isinstance(patched_unet, PatchedModule)
    # what callers read from the module is the module's own
    assert patched_unet.config is unet.config and patched_unet.dtype == torch.float32
    assert next(patched_unet.parameters()) is next(unet.parameters())
    lora_out, lora_text = run_unet(patched_unet), run_text(patched_te)
    assert (lora_out - base_out).abs().max() > 0.05
    assert (lora_text - base_text).abs().max() > 0.05

    after_unet, after_te = snapshot(unet), snapshot(text_encoder)
    assert before_unet.keys() == after_unet.keys()
    assert all(torch.equal(before_unet[k], after_unet[k]) for k in before_unet)
    assert all(torch.equal(before_te[k], after_te[k]) for k in before_te)
    # the plain module still computes exactly what it did before any LoRA was bound
    assert torch.equal(run_unet(unet), base_out)
    assert torch.equal(run_text(text_encoder), base_text)
    # strength 0 and no patches: the module itself
    assert bind(unet, "unet", ((weights, 0.0),)) is unet


def test_strengths_run_concurrently_on_one_base(
    tmp_path: Path, unet: Any, layers: tuple[Layers, Layers]
) -> None:
    from easel.models.lora import bind, load_lora

    weights = load_lora(save(kohya_state_dict(*layers), tmp_path / "c.safetensors"))
    callers = {
        "base": unet,
        "half": bind(unet, "unet", ((weights, 0.5),)),
        "full": bind(unet, "unet", ((weights, 1.0),)),
        "minus": bind(unet, "unet", ((weights, -1.0),)),
    }
    expected = {label: run_unet(model) for label, model in callers.items()}
    assert len({round(float(v.abs().sum()), 3) for v in expected.values()}) == 4

    results: dict[str, list[torch.Tensor]] = {label: [] for label in callers}
    barrier = threading.Barrier(len(callers))
    errors: list[BaseException] = []

    def work(label: str) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                results[label].append(run_unet(callers[label]))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(label,)) for label in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for label, outs in results.items():
        assert len(outs) == 3
        assert all(torch.equal(out, expected[label]) for out in outs), label


def test_loras_stack(tmp_path: Path, unet: Any, layers: tuple[Layers, Layers]) -> None:
    from easel.models.lora import bind, load_lora, merged_weights

    unet_layers, _ = layers
    first = load_lora(save(kohya_state_dict(unet_layers, {}), tmp_path / "a.safetensors"))
    other = random_lora(lora_targets(unet, convs=False), seed=7)
    second = load_lora(save(peft_state_dict(other, {}), tmp_path / "b.safetensors"))
    both = merged_weights(unet, "unet", ((first, 0.6), (second, -0.4)))
    only_first = merged_weights(unet, "unet", ((first, 0.6),))
    modules = dict(unet.named_modules())
    for name, (down, up) in other.items():
        sub = modules[name]
        delta = -0.4 * (up @ down)
        torch.testing.assert_close(both[sub], only_first[sub] + delta, rtol=0, atol=1e-5)
    stacked = run_unet(bind(unet, "unet", ((first, 0.6), (second, -0.4))))
    reversed_ = run_unet(bind(unet, "unet", ((second, -0.4), (first, 0.6))))
    torch.testing.assert_close(stacked, reversed_, rtol=0, atol=1e-5)
    assert (stacked - run_unet(bind(unet, "unet", ((first, 0.6),)))).abs().max() > 0.01


def test_merged_weights_are_cached_and_bounded(
    tmp_path: Path, unet: Any, layers: tuple[Layers, Layers]
) -> None:
    from easel.models import lora

    weights = lora.load_lora(save(kohya_state_dict(*layers), tmp_path / "m.safetensors"))
    a = lora.merged_weights(unet, "unet", ((weights, 0.25),))
    assert lora.merged_weights(unet, "unet", ((weights, 0.25),)) is a
    for strength in (0.1, 0.2, 0.3, 0.4):
        lora.merged_weights(unet, "unet", ((weights, strength),))
    assert len(lora._MERGED[unet]) == lora.MERGED_PER_MODULE
    assert lora.merged_weights(unet, "unet", ((weights, 0.25),)) is not a


def test_component_names() -> None:
    from easel.models.lora import component_of

    assert component_of("unet") == "unet"
    assert component_of("text_encoder:") == "text_encoder"
    assert component_of("text_encoder:l") == "text_encoder"
    assert component_of("text_encoder:g") == "text_encoder_2"
    with pytest.raises(ValueError, match="unknown LoRA component 'vae'"):
        component_of("vae")


def test_loading_is_cached_by_file_state(tmp_path: Path, layers: tuple[Layers, Layers]) -> None:
    import os

    from easel.models.lora import load_lora

    path = save(kohya_state_dict(*layers), tmp_path / "cached.safetensors")
    first = load_lora(path)
    assert load_lora(path) is first
    save(peft_state_dict(*layers), path)
    os.utime(path, ns=(1, 1))
    assert load_lora(path) is not first


def test_dtype_changes_and_copies(tmp_path: Path, unet: Any, layers: tuple[Layers, Layers]) -> None:
    """Merged weights follow the module's dtype (bf16 here; the device the same way), and a
    copy of a once-patched module computes with its own weights."""
    import copy

    from easel.models import lora

    weights = lora.load_lora(save(kohya_state_dict(*layers), tmp_path / "d.safetensors"))
    run_unet(lora.bind(unet, "unet", ((weights, 1.0),)))  # the layers are now patchable
    twin = copy.deepcopy(unet)
    assert torch.equal(run_unet(twin), run_unet(unet))
    fp32 = lora.merged_weights(twin, "unet", ((weights, 1.0),))
    assert all(w.dtype == torch.float32 for w in fp32.values())
    twin.to(torch.bfloat16)
    half = lora.merged_weights(twin, "unet", ((weights, 1.0),))
    assert all(w.dtype == torch.bfloat16 for w in half.values())
    assert len(lora._MERGED[twin]) == 1  # the float32 copies were dropped
    for sub, merged in half.items():
        expected = (sub.weight.float() + (fp32[sub] - sub.weight.float())).to(torch.bfloat16)
        assert (merged.float() - expected.float()).abs().max() <= 0.02
    x, t, ehs = unet_inputs()
    with torch.inference_mode():
        base = twin(x.bfloat16(), t, encoder_hidden_states=ehs.bfloat16()).sample
        patched = lora.bind(twin, "unet", ((weights, 1.0),))(
            x.bfloat16(), t, encoder_hidden_states=ehs.bfloat16()
        ).sample
    assert patched.dtype == torch.bfloat16
    assert (patched.float() - base.float()).abs().max() > 0.05
