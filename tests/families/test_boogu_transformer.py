"""Boogu-Image's transformer (easel.models.boogu_transformer) against what it is specified to
compute. No library has Boogu, so there is no pipeline to compare with; instead:

- its dual-stream block equals Boogu's block written out here from its definition (ComfyUI's
  BooguDoubleStreamBlock: per-stream q / k / v over [caption; image] attending jointly, shared
  per-head RMSNorms and RoPE, per-stream then shared output projections; the image's own
  self-attention; five RMSNorm-zero modulations; the feed-forwards fed
  norm((1 + scale) * norm(x) + shift)), on the file's weights;
- its single-stream blocks are OmniGen2's (tests/families/test_omnigen2_transformer.py's
  written-out block), its input stages OmniGen2's (the same module);
- the recogniser tells Boogu's file from OmniGen2's and reads the config off the shapes;
- Boogu's chat templates pick the system turn as ComfyUI's BooguTokenizer does.
"""

from __future__ import annotations

from typing import Any

import torch

from tests.families.test_omnigen2_transformer import block_weights, omnigen2_block, rms, rotate
from tests.fixtures import boogu_family

boogu_models = boogu_family.boogu_models


def modulation(w: dict[str, Any], name: str, temb: Any) -> tuple[Any, ...]:
    emb = torch.nn.functional.silu(temb) @ w[f"{name}.linear.weight"].T + w[f"{name}.linear.bias"]
    return tuple(emb.chunk(4, dim=1))


def swiglu(w: dict[str, Any], name: str, x: Any) -> Any:
    gate = torch.nn.functional.silu(x @ w[f"{name}.linear_1.weight"].T)
    return (gate * (x @ w[f"{name}.linear_3.weight"].T)) @ w[f"{name}.linear_2.weight"].T


def attention(q: Any, k: Any, v: Any, heads: int, kv_heads: int) -> Any:
    k = k.repeat_interleave(heads // kv_heads, dim=2)
    v = v.repeat_interleave(heads // kv_heads, dim=2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).flatten(2)


def boogu_double_block(
    w: dict[str, Any], image: Any, caption: Any, freqs: Any, temb: Any, heads: int, kv: int
) -> tuple[Any, Any]:
    """Boogu's dual-stream block from its definition, on a block's raw weights `w`."""
    b, n_cap = caption.shape[0], caption.shape[1]

    def normed(name: str, x: Any) -> tuple[Any, ...]:
        scale, *rest = modulation(w, name, temb)
        return (rms(x, w[f"{name}.norm.weight"]) * (1 + scale[:, None]), *rest)

    img1, img_gate_msa, img_scale_mlp, img_gate_mlp = normed("img_norm1", image)
    img2, img_shift_mlp, _, _ = normed("img_norm2", image)
    img3, img_gate_self, _, _ = normed("img_norm3", image)
    ins1, ins_gate_msa, ins_scale_mlp, ins_gate_mlp = normed("instruct_norm1", caption)
    ins2, ins_shift_mlp, _, _ = normed("instruct_norm2", caption)

    p = "img_instruct_attn.processor."

    def project(kind: str, count: int) -> Any:
        joint = torch.cat(
            [ins1 @ w[f"{p}instruct_to_{kind}.weight"].T, img1 @ w[f"{p}img_to_{kind}.weight"].T],
            dim=1,
        )
        return joint.view(b, joint.shape[1], count, -1)

    q = rotate(rms(project("q", heads), w["img_instruct_attn.norm_q.weight"]), freqs)
    k = rotate(rms(project("k", kv), w["img_instruct_attn.norm_k.weight"]), freqs)
    joint = attention(q, k, project("v", kv), heads, kv)
    joint = torch.cat(
        [
            joint[:, :n_cap] @ w[f"{p}instruct_out.weight"].T,
            joint[:, n_cap:] @ w[f"{p}img_out.weight"].T,
        ],
        dim=1,
    ) @ w["img_instruct_attn.to_out.0.weight"].T

    image_freqs = freqs[:, n_cap:]
    s = "img_self_attn."
    q = rotate(rms((img3 @ w[s + "to_q.weight"].T).view(b, -1, heads, q.shape[-1]),
                   w[s + "norm_q.weight"]), image_freqs)  # fmt: skip
    k = rotate(rms((img3 @ w[s + "to_k.weight"].T).view(b, -1, kv, q.shape[-1]),
                   w[s + "norm_k.weight"]), image_freqs)  # fmt: skip
    v = (img3 @ w[s + "to_v.weight"].T).view(b, -1, kv, q.shape[-1])
    self_out = attention(q, k, v, heads, kv) @ w[s + "to_out.0.weight"].T

    def gate(value: Any) -> Any:
        return torch.tanh(value)[:, None]

    image = image + gate(img_gate_msa) * rms(joint[:, n_cap:], w["img_attn_norm.weight"])
    image = image + gate(img_gate_self) * rms(self_out, w["img_self_attn_norm.weight"])
    mlp_in = (1 + img_scale_mlp[:, None]) * img2 + img_shift_mlp[:, None]
    mlp = swiglu(w, "img_feed_forward", rms(mlp_in, w["img_ffn_norm1.weight"]))
    image = image + gate(img_gate_mlp) * rms(mlp, w["img_ffn_norm2.weight"])
    caption = caption + gate(ins_gate_msa) * rms(joint[:, :n_cap], w["instruct_attn_norm.weight"])
    mlp_in = (1 + ins_scale_mlp[:, None]) * ins2 + ins_shift_mlp[:, None]
    mlp = swiglu(w, "instruct_feed_forward", rms(mlp_in, w["instruct_ffn_norm1.weight"]))
    caption = caption + gate(ins_gate_mlp) * rms(mlp, w["instruct_ffn_norm2.weight"])
    return image, caption


def test_blocks_compute_boogus_blocks(boogu_models: Any) -> None:
    from easel.models.omnigen2_transformer import position_ids, rotary_frequencies

    config = boogu_family.CONFIG
    heads, kv = config["num_attention_heads"], config["num_kv_heads"]
    model = boogu_models.transformer
    state = {k: v.detach() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(5)
    caption_len, dim = 4, config["hidden_size"]
    ids = position_ids(caption_len, [(2, 3)], (2, 2))
    freqs = rotary_frequencies(ids, config["axes_dim_rope"], 10000)[None].expand(2, -1, -1)
    image = torch.randn(2, len(ids) - caption_len, dim, generator=generator)
    caption = torch.randn(2, caption_len, dim, generator=generator)
    temb = torch.randn(2, dim, generator=generator)
    for index in range(config["num_double_stream_layers"]):
        weights = block_weights(state, f"double_stream_layers.{index}.")
        expected = boogu_double_block(weights, image, caption, freqs, temb, heads, kv)
        with torch.no_grad():
            ours = model.double_stream_layers[index](
                image, caption, freqs, freqs[:, caption_len:], temb
            )
        for a, b in zip(ours, expected, strict=True):
            assert (a - b).abs().max().item() < 1e-5
    joint = torch.cat([caption, image], dim=1)
    weights = block_weights(state, "single_stream_layers.0.")
    expected = omnigen2_block(weights, joint, freqs, temb, heads, kv)
    with torch.no_grad():
        ours = model.single_stream_layers[0](joint, None, freqs, temb)
    assert (ours - expected).abs().max().item() < 1e-5


def test_file_is_recognised_as_boogu_not_omnigen2_and_sized(boogu_models: Any) -> None:
    from easel.models import family_files
    from easel.models.families import boogu, omnigen2

    path = boogu_models.root / "models" / "diffusion_models" / boogu_family.FILES[
        "diffusion_models"
    ]
    keys = family_files.header(path)
    assert keys is not None
    found = boogu.recognise(keys)
    assert found is not None and found[0] is boogu.BOOGU
    assert omnigen2.recognise(keys) is None
    config = boogu.transformer_config(keys)
    for key, value in boogu_family.CONFIG.items():
        assert config[key] == value, key


def test_chat_templates_pick_the_system_turn_as_comfyui() -> None:
    from easel.models.families.boogu import DROP_SYSTEM, T2I_SYSTEM, prompt_text

    head = "<|im_start|>system\n"
    user = "<|im_end|>\n<|im_start|>user\n"
    assert prompt_text("a cat") == f"{head}{T2I_SYSTEM}{user}a cat<|im_end|>\n"
    assert prompt_text("") == f"{head}{DROP_SYSTEM}<|im_end|>\n<|im_start|>user\n<|im_end|>\n"
    vision = "<|vision_start|><|image_pad|><|vision_end|>"
    assert prompt_text("remove the hat", 2) == (
        f"{head}{DROP_SYSTEM}<|im_end|>\n<|im_start|>user\n{vision}{vision}remove the hat"
        "<|im_end|>\n"
    )
