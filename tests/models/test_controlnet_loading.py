"""ControlNet files as users have them: a diffusers folder, or ONE file in the original layout
(`control_model.`-prefixed or bare) or the diffusers one, with nothing beside it. Each loads to
exactly the ControlNetModel it was written from (same tensors, same outputs).

The builders here are shared with tests/nodes/test_controlnet_nodes.py: tiny ControlNets whose
shapes follow the real architectures' rules (SD 1.x: 8 heads, conv proj_in; SD 2.x and XL:
64-channel heads, linear proj_in; XL: a level without attention, 256-wide time ids; GroupNorm
of 32), and the inverse of diffusers' single-file key conversion to write original-layout files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from easel.models.controlnet import (
    controlnet_handle,
    diffusers_state_dict,
    load_controlnet,
)
from easel.models.errors import ModelError, UnsafePickleError
from easel.models.manager import ModelManager
from tests.fixtures.tiny_models import _ldm_unet_key

STANDARD_HINT = (16, 32, 96, 256)  # every released ControlNet's hint encoder (8x smaller)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    """Tiny models on a shared 2-core machine: torch's thread pool costs 50x more than it
    gains (a 8x8 convolution takes 40 ms with 2 busy threads, under 1 ms with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_controlnet(kind: str, seed: int, hint: tuple[int, ...] = (16, 32)) -> Any:
    """A random tiny ControlNetModel of `kind` ("sd1", "sd2", "sdxl"); `hint` its hint encoder's
    channels (two: a 2x smaller hint, as the tiny VAEs' latents are)."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    common = dict(
        conditioning_embedding_out_channels=hint, layers_per_block=1, cross_attention_dim=16
    )
    if kind == "sd1":
        model = ControlNetModel(
            block_out_channels=(32, 64),
            attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            **common,
        )
    elif kind == "sd2":
        model = ControlNetModel(
            block_out_channels=(64, 128),
            attention_head_dim=(1, 2),
            use_linear_projection=True,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            **common,
        )
    elif kind == "sdxl":
        common["layers_per_block"] = 2
        model = ControlNetModel(
            block_out_channels=(64, 128),
            attention_head_dim=(1, 2),
            use_linear_projection=True,
            transformer_layers_per_block=(1, 2),
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=32 + 6 * 256,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            **common,
        )
    else:
        raise ValueError(kind)
    return randomise(model, seed)


def randomise(model: Any, seed: int, scale: float = 0.1) -> Any:
    """Noise on every weight, so the zero-initialised convolutions give real residuals."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    return model.eval()


def ldm_controlnet_state(model: Any, prefix: str = "control_model.") -> dict[str, Any]:
    """`model`'s tensors under the original (ControlNet repository / LDM) keys."""
    layers = model.config.layers_per_block
    hint_blocks = len(model.controlnet_cond_embedding.blocks)
    out: dict[str, Any] = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "controlnet_down_blocks":
            ldm = f"zero_convs.{parts[1]}.0.{parts[2]}"
        elif parts[0] == "controlnet_mid_block":
            ldm = f"middle_block_out.0.{parts[1]}"
        elif parts[0] == "controlnet_cond_embedding":
            index = {"conv_in": 0, "conv_out": 2 * (hint_blocks + 1)}.get(parts[1])
            if index is None:
                index = 2 * (int(parts[2]) + 1)
            ldm = f"input_hint_block.{index}.{parts[-1]}"
        elif parts[0] == "add_embedding":
            ldm = key.replace("add_embedding.linear_1", "label_emb.0.0").replace(
                "add_embedding.linear_2", "label_emb.0.2"
            )
        else:
            ldm = _ldm_unet_key(key, layers)
        out[prefix + ldm] = value.contiguous()
    return out


def write_single_file(model: Any, path: Path, layout: str = "prefixed") -> Path:
    """`model` as one .safetensors file: "prefixed" (control_model.), "bare" or "diffusers"."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    if layout == "diffusers":
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
    else:
        state = ldm_controlnet_state(model, "control_model." if layout == "prefixed" else "")
    save_file(state, str(path))
    return path


def example_inputs(model: Any, seed: int = 0) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(seed)
    factor = 2 ** (len(model.config.conditioning_embedding_out_channels) - 1)
    inputs: dict[str, Any] = {
        "sample": torch.randn(2, 4, 8, 8, generator=generator),
        "timestep": torch.tensor(500),
        "encoder_hidden_states": torch.randn(2, 5, 16, generator=generator),
        "controlnet_cond": torch.rand(2, 3, 8 * factor, 8 * factor, generator=generator),
    }
    if model.config.addition_embed_type == "text_time":
        inputs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(2, 32, generator=generator),
            "time_ids": torch.tensor([[16.0, 16.0, 0.0, 0.0, 16.0, 16.0]] * 2),
        }
    return inputs


def assert_same_controlnet(loaded: Any, original: Any) -> None:
    ours, theirs = loaded.state_dict(), original.state_dict()
    assert sorted(ours) == sorted(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    inputs = example_inputs(original)
    with torch.no_grad():
        down_a, mid_a = loaded(**inputs, return_dict=False)
        down_b, mid_b = original(**inputs, return_dict=False)
    assert len(down_a) == len(down_b)
    for a, b in zip([*down_a, mid_a], [*down_b, mid_b], strict=True):
        assert float(b.abs().max()) > 0  # real residuals, not zero convolutions
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("kind", "layout", "hint"),
    [
        ("sd1", "prefixed", (16, 32)),
        ("sd1", "bare", STANDARD_HINT),
        ("sd2", "prefixed", (16, 32)),
        ("sdxl", "bare", (16, 32)),
        ("sdxl", "diffusers", STANDARD_HINT),
    ],
)
def test_single_file_with_nothing_beside_it_loads_the_same_controlnet(
    tmp_path: Path, kind: str, layout: str, hint: tuple[int, ...]
) -> None:
    original = tiny_controlnet(kind, seed=3, hint=hint)
    path = write_single_file(original, tmp_path / f"cn-{kind}.safetensors", layout)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    loaded = load_controlnet(path, torch.float32)
    assert type(loaded).__name__ == "ControlNetModel"
    assert loaded.config.cross_attention_dim == 16
    assert loaded.config.use_linear_projection == (kind != "sd1")
    assert_same_controlnet(loaded, original)


def test_original_layout_converts_to_exactly_the_diffusers_keys() -> None:
    original = tiny_controlnet("sdxl", seed=4, hint=STANDARD_HINT)
    for prefix in ("control_model.", ""):
        converted = diffusers_state_dict(ldm_controlnet_state(original, prefix), "x")
        assert sorted(converted) == sorted(original.state_dict())


def test_diffusers_folder_loads_once_through_the_manager(tmp_path: Path) -> None:
    original = tiny_controlnet("sd1", seed=5)
    original.save_pretrained(str(tmp_path / "controlnet" / "canny"), safe_serialization=True)
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    assert manager.names("controlnet") == ["canny"]
    first = controlnet_handle(manager, "canny", manager.resolve("controlnet", "canny"))
    loads = manager.loads
    second = controlnet_handle(manager, "canny", manager.resolve("controlnet", "canny"))
    assert manager.loads == loads and second.model is first.model
    assert first.hint_factor == 2
    assert_same_controlnet(first.model, original)
    assert "ControlNetModel" in {row["class"] for row in manager.describe()}


def test_pickle_file_is_refused_unless_allowed(tmp_path: Path) -> None:
    original = tiny_controlnet("sd1", seed=6)
    path = tmp_path / "control_v11p_sd15_canny.pth"
    torch.save(ldm_controlnet_state(original), str(path))
    with pytest.raises(UnsafePickleError, match=r"control_v11p_sd15_canny\.pth"):
        load_controlnet(path, torch.float32)
    assert_same_controlnet(load_controlnet(path, torch.float32, allow_pickle=True), original)


def test_a_file_that_is_not_a_controlnet_is_refused_by_name(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "some_lora.safetensors"
    save_file(
        {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32)},
        str(path),
    )
    with pytest.raises(ModelError, match=r"some_lora\.safetensors is not a ControlNet"):
        load_controlnet(path, torch.float32)


def test_a_truncated_controlnet_names_the_file_and_what_is_missing(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = ldm_controlnet_state(tiny_controlnet("sd1", seed=7))
    del state["control_model.zero_convs.1.0.weight"]
    path = tmp_path / "broken.safetensors"
    save_file(state, str(path))
    with pytest.raises(ModelError, match=r"broken\.safetensors.*controlnet_down_blocks\.1"):
        load_controlnet(path, torch.float32)


def test_shuffle_file_pools_its_residuals_as_comfyui_does(tmp_path: Path) -> None:
    original = tiny_controlnet("sd1", seed=8)
    plain = load_controlnet(write_single_file(original, tmp_path / "a.safetensors"), torch.float32)
    shuffle = load_controlnet(
        write_single_file(original, tmp_path / "control_v11e_sd15_shuffle.safetensors"),
        torch.float32,
    )
    assert not plain.config.global_pool_conditions
    assert shuffle.config.global_pool_conditions
    with torch.no_grad():
        down, _ = shuffle(**example_inputs(original), return_dict=False)
    assert all(d.shape[2:] == (1, 1) for d in down)


def test_a_folder_of_another_model_class_is_refused(tmp_path: Path) -> None:
    from diffusers import UNet2DModel

    folder = tmp_path / "not-a-controlnet"
    UNet2DModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2,
    ).save_pretrained(str(folder))
    with pytest.raises(ModelError, match="holds a UNet2DModel"):
        load_controlnet(folder, torch.float32)


# The configs of released ControlNets (their diffusers config.json files, defaults left out).
RELEASED = {
    "sd15 (lllyasviel/control_v11p_sd15_canny)": dict(
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        attention_head_dim=8,
        cross_attention_dim=768,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    ),
    "sd21 (thibaud/controlnet-sd21)": dict(
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        attention_head_dim=(5, 10, 20, 20),
        cross_attention_dim=1024,
        use_linear_projection=True,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    ),
    "sdxl (diffusers/controlnet-canny-sdxl-1.0)": dict(
        block_out_channels=(320, 640, 1280),
        layers_per_block=2,
        attention_head_dim=(5, 10, 20),
        cross_attention_dim=2048,
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2, 10),
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    ),
}


@pytest.mark.parametrize("name", list(RELEASED))
def test_released_architectures_are_read_off_their_original_layout_shapes(name: str) -> None:
    """Full-size ControlNets on the meta device (shapes only): the config read off the
    original-layout keys builds the same model as the released config."""
    from diffusers import ControlNetModel

    from easel.models.controlnet import controlnet_config

    with torch.device("meta"):
        released = ControlNetModel(**RELEASED[name])
    state = diffusers_state_dict(ldm_controlnet_state(released), name)
    config = controlnet_config(state, name)
    with torch.device("meta"):
        ours = ControlNetModel(**config)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in released.state_dict().items()
    }
    heads = released.config.attention_head_dim
    assert tuple(as_list(config["attention_head_dim"])) == tuple(as_list(heads))
    assert config["norm_num_groups"] == released.config.norm_num_groups == 32
    for key in (
        "cross_attention_dim",
        "use_linear_projection",
        "addition_embed_type",
        "addition_time_embed_dim",
        "projection_class_embeddings_input_dim",
    ):
        assert config.get(key) == released.config[key], key


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]
