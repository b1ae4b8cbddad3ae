"""OmniGen2's transformer (easel.models.omnigen2_transformer) against what it is built from and
what it is specified to compute. No library has OmniGen2, so there is no pipeline to compare
with; instead:

- its blocks are diffusers' Lumina2TransformerBlock: a fresh diffusers block loads a block of
  the ComfyUI-layout file by name (strictly), and the loaded blocks, modulated and not, equal
  OmniGen2's block written out here from its definition (RMSNorm-zero modulation with tanh
  gates, GQA attention with per-head RMSNorm on q and k and interleaved-pair RoPE, SwiGLU);
- its RoPE positions equal the rule worked out by hand (caption (i, i, i), each reference image
  on its own frame, the next frame max(rows, columns) further, the target last), and its
  rotary factors equal exp(i * position * theta^(-2k / d)) per axis;
- the recogniser and the config read off the file's shapes rebuild the same model.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.fixtures import omnigen2_family

omnigen2_models = omnigen2_family.omnigen2_models


def rms(x: Any, weight: Any, eps: float = 1e-5) -> Any:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate(x: Any, freqs: Any) -> Any:
    """Pairs (2i, 2i + 1) of the last dim as complex numbers, times `freqs` [B, L, D/2]."""
    pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
    return torch.view_as_real(pairs * freqs[:, :, None]).flatten(3).to(x.dtype)


def omnigen2_block(
    w: dict[str, Any], x: Any, freqs: Any, temb: Any, heads: int, kv_heads: int
) -> Any:
    """OmniGen2's transformer block from its definition, on a block's raw weights `w`."""
    modulated = "norm1.linear.weight" in w
    if modulated:
        emb = torch.nn.functional.silu(temb) @ w["norm1.linear.weight"].T + w["norm1.linear.bias"]
        scale_msa, gate_msa, scale_mlp, gate_mlp = emb.chunk(4, dim=1)
        h = rms(x, w["norm1.norm.weight"]) * (1 + scale_msa[:, None])
    else:
        h = rms(x, w["norm1.weight"])
    b, length, _ = x.shape
    q = (h @ w["attn.to_q.weight"].T).view(b, length, heads, -1)
    k = (h @ w["attn.to_k.weight"].T).view(b, length, kv_heads, -1)
    v = (h @ w["attn.to_v.weight"].T).view(b, length, kv_heads, -1)
    q = rotate(rms(q, w["attn.norm_q.weight"]), freqs)
    k = rotate(rms(k, w["attn.norm_k.weight"]), freqs)
    k = k.repeat_interleave(heads // kv_heads, dim=2)
    v = v.repeat_interleave(heads // kv_heads, dim=2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
    attn = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(b, length, -1)
    attn = attn @ w["attn.to_out.0.weight"].T
    gate = torch.tanh(gate_msa)[:, None] if modulated else 1
    x = x + gate * rms(attn, w["norm2.weight"])
    f = rms(x, w["ffn_norm1.weight"])
    if modulated:
        f = f * (1 + scale_mlp[:, None])
    swiglu = torch.nn.functional.silu(f @ w["feed_forward.linear_1.weight"].T) * (
        f @ w["feed_forward.linear_3.weight"].T
    )
    mlp = swiglu @ w["feed_forward.linear_2.weight"].T
    gate = torch.tanh(gate_mlp)[:, None] if modulated else 1
    return x + gate * rms(mlp, w["ffn_norm2.weight"])


def block_weights(state: dict[str, Any], head: str) -> dict[str, Any]:
    return {k[len(head) :]: v for k, v in state.items() if k.startswith(head)}


@pytest.mark.parametrize("head", ["layers.1.", "context_refiner.0."])
def test_blocks_are_diffusers_lumina2_blocks_and_compute_omnigen2s_block(
    omnigen2_models: Any, head: str
) -> None:
    from diffusers.models.transformers.transformer_lumina2 import Lumina2TransformerBlock
    from safetensors.torch import load_file

    from easel.models.omnigen2_transformer import position_ids, rotary_frequencies

    config = omnigen2_family.CONFIG
    root = omnigen2_models.root
    state = load_file(
        str(root / "models" / "diffusion_models" / omnigen2_family.FILES["diffusion_models"])
    )
    weights = block_weights(state, head)
    modulation = not head.startswith("context_refiner")
    block = Lumina2TransformerBlock(
        config["hidden_size"],
        config["num_attention_heads"],
        config["num_kv_heads"],
        config["multiple_of"],
        None,  # type: ignore[arg-type]
        1e-5,
        modulation=modulation,
    ).eval()
    block.load_state_dict(weights, strict=True)  # the same weight layout, name for name

    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 13, config["hidden_size"], generator=generator)
    temb = torch.randn(2, config["hidden_size"], generator=generator)
    ids = position_ids(3, [(2, 3)], (2, 2))
    freqs = rotary_frequencies(ids, config["axes_dim_rope"], 10000)[None].expand(2, -1, -1)
    expected = omnigen2_block(
        weights, x, freqs, temb, config["num_attention_heads"], config["num_kv_heads"]
    )
    loaded = dict(omnigen2_models.transformer.named_modules())[head.rstrip(".")]
    with torch.no_grad():
        ours = loaded(x, None, freqs, temb if modulation else None)
        fresh = block(x, None, freqs, temb if modulation else None)
    assert (ours - expected).abs().max().item() < 1e-5
    assert torch.equal(ours, fresh)


def test_rope_positions_follow_omnigen2s_rule() -> None:
    from easel.models.omnigen2_transformer import position_ids

    # 3 caption tokens, a reference image of 2 x 3 patches, the target of 2 x 2
    assert position_ids(3, [(2, 3)], (2, 2)).tolist() == [
        [0, 0, 0], [1, 1, 1], [2, 2, 2],
        [3, 0, 0], [3, 0, 1], [3, 0, 2], [3, 1, 0], [3, 1, 1], [3, 1, 2],
        [6, 0, 0], [6, 0, 1], [6, 1, 0], [6, 1, 1],
    ]  # fmt: skip
    # no reference: the target's frame follows the caption directly
    assert position_ids(2, [], (1, 2)).tolist() == [[0, 0, 0], [1, 1, 1], [2, 0, 0], [2, 0, 1]]

    caption, refs, image = 5, [(3, 1), (2, 4), (4, 4)], (3, 2)
    expected = [[i, i, i] for i in range(caption)]
    frame = caption
    for rows, cols in [*refs, image]:
        expected += [[frame, r, c] for r in range(rows) for c in range(cols)]
        frame += max(rows, cols)
    assert position_ids(caption, refs, image).tolist() == expected


def test_rotary_factors_are_exp_i_position_times_frequency() -> None:
    import math

    from easel.models.omnigen2_transformer import position_ids, rotary_frequencies

    axes, theta = (8, 4, 6), 10000.0
    ids = position_ids(4, [(2, 2)], (3, 1))
    ours = rotary_frequencies(ids, axes, theta)
    assert ours.shape == (len(ids), sum(axes) // 2)
    column = 0
    for axis, dim in enumerate(axes):
        for k in range(dim // 2):
            angle = ids[:, axis].double() * theta ** (-2 * k / dim)
            expected = torch.polar(torch.ones_like(angle), angle)
            assert torch.allclose(ours[:, column].to(torch.complex128), expected, atol=1e-12)
            column += 1
    assert math.isclose(ours[7, 0].angle().item(), 4.0 - 2 * math.pi, abs_tol=1e-9)


def test_file_is_recognised_and_sized_as_built(omnigen2_models: Any) -> None:
    from easel.models import family_files
    from easel.models.families import omnigen2

    path = omnigen2_models.root / "models" / "diffusion_models" / "omnigen2_fp16.safetensors"
    keys = family_files.header(path)
    assert keys is not None
    found = omnigen2.recognise(keys)
    assert found is not None and found[0] is omnigen2.OMNIGEN2
    config = omnigen2.transformer_config(keys)
    built = omnigen2_models.transformer.config
    for key, value in omnigen2_family.CONFIG.items():
        assert config[key] == value == built[key], key
    # the prefixed layout (ComfyUI's saved checkpoints) too; Lumina 2's keys are not OmniGen2's
    assert omnigen2.prefix_of({f"model.diffusion_model.{k}": v for k, v in keys.items()}) == (
        "model.diffusion_model."
    )
    lumina2_keys = {"cap_embedder.1.weight": 0, "layers.0.attention.qkv.weight": 0}
    assert omnigen2.recognise(lumina2_keys) is None


def test_conditionings_omnigen2_cannot_read_are_refused_by_name(omnigen2_models: Any) -> None:
    from easel.models.families.omnigen2 import OMNIGEN2
    from easel.models.omnigen2_denoiser import OmniGen2Network

    model = omnigen2_models.transformer
    network = OmniGen2Network(model, model, OMNIGEN2)

    def condition(cond: dict[str, Any]) -> Any:
        return network.condition(cond, 1, "cpu", torch.float32, pixel_size=(64, 64))

    with pytest.raises(ValueError, match="TextEncoderLoader type omnigen2"):
        condition({"embeds": None})
    with pytest.raises(ValueError, match="width 64 but this OmniGen2 model expects 128"):
        condition({"embeds": torch.zeros(1, 4, 64)})
    embeds = torch.zeros(1, 4, 128)
    with pytest.raises(ValueError, match=r"6 reference latents .* at most 5"):
        condition({"embeds": embeds, "reference_latents": [torch.zeros(1, 16, 4, 4)] * 6})
    with pytest.raises(ValueError, match="not a 16-channel image latent"):
        condition({"embeds": embeds, "reference_latents": [torch.zeros(1, 4, 4, 4)]})
    cond = condition({"embeds": embeds, "reference_latents": [torch.zeros(1, 16, 3, 5)]})
    out = network(torch.zeros(1, 16, 5, 7), torch.tensor([500.0]), cond)  # odd sizes: padded
    assert out.shape == (1, 16, 5, 7)


def test_text_encoder_loader_refuses_a_file_that_is_not_qwen25_vl(
    omnigen2_models: Any, tmp_path: Any
) -> None:
    from easel.models.errors import ModelError
    from easel.models.family_files import load_clip
    from easel.models.manager import ModelManager

    root = omnigen2_models.root
    manager = ModelManager([root / "models", root / "ComfyUI"], device="cpu", dtype=torch.float32)
    vae = root / "models" / "vae" / "ae.safetensors"
    with pytest.raises(ModelError, match=r"ae\.safetensors is not a Qwen2\.5-VL text encoder"):
        load_clip("omnigen2", "ae.safetensors", [vae], manager)
