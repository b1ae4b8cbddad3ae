"""Skip Layer Guidance on tiny SD3.5 files (CPU fp32, max abs pixel difference 1e-3):

- SkipLayerGuidanceSD3 / SkipLayerGuidanceDiT give StableDiffusion3Pipeline's image with
  `skip_guidance_layers` over the same steps (ComfyUI's percent window on the shifted noise
  levels and diffusers' step window are chosen to pick the same steps);
- what diffusers has not (SkipLayerGuidanceDiTSimple's skipped negative pass, the DiT node's
  rescaling) against a loop written here on the pipeline's own components, with the
  transformer's own `skip_layers`;
- Flux.1 (slow): SkipLayerGuidanceDiT on double and single blocks gives FluxPipeline's image
  with its transformer returning (1 + scale) cond - scale skipped, the skipped pass made by a
  copy of the transformer with those blocks deleted (cfg 1: no negative); Chroma the same
  with identity modules in their place;
- a family whose transformer cannot skip layers, and a layer it has not, are clear errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from easel.core.node import NodeError
from tests.families.test_sd3_parity import PROMPT, reference, split_workflow
from tests.families.workflows import SIZE, as_tensor, image_of
from tests.fixtures import chroma_family, flux_family, sd3_family

sd3_root = sd3_family.sd3_root
sd3_models = sd3_family.sd3_models
sd3_manager = sd3_family.sd3_manager
run_sd3 = sd3_family.run_sd3
flux_root = flux_family.flux_root
flux_models = flux_family.flux_models
flux_manager = flux_family.flux_manager
run_flux = flux_family.run_flux
chroma_root = chroma_family.chroma_root
chroma_models = chroma_family.chroma_models
chroma_manager = chroma_family.chroma_manager
run_chroma = chroma_family.run_chroma

TOLERANCE = 1e-3
STEPS = 5
CFG = 4.5
# shift 3: sigmas shift(1, .8, .6, .4, .2); 10 % .. 50 % is shift(.9) .. shift(.5): steps 1
# and 2, as diffusers' 0.5 < i < 2.5
START, END = 0.1, 0.5


def with_node(node_type: str, steps: int = STEPS, **inputs: Any) -> dict[str, Any]:
    nodes = split_workflow("large", cfg=CFG, steps=steps)
    nodes["slg"] = {"type": node_type, "inputs": {"model": ["unet", "model"], **inputs}}
    nodes["k"]["inputs"]["model"] = ["slg", "model"]
    return nodes


def test_skip_layer_guidance_sd3_equals_pipeline(sd3_models: Any, run_sd3: Any) -> None:
    nodes = with_node(
        "SkipLayerGuidanceSD3", layers="1", scale=2.8, start_percent=START, end_percent=END
    )
    ours = image_of(run_sd3(nodes, ["dec"]))
    theirs = reference(
        sd3_models["large"].pipe,
        steps=STEPS,
        skip_guidance_layers=[1],
        skip_layer_guidance_scale=2.8,
        skip_layer_guidance_start=START,
        skip_layer_guidance_stop=END,
    )
    plain = reference(sd3_models["large"].pipe, steps=STEPS)
    assert (theirs - plain).abs().max().item() > 0.01  # the guidance changes the image
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def manual_reference(
    pipe: Any,
    layers: list[int],
    *,
    steps: int = STEPS,
    uncond: bool = False,
    scale: float = 0.0,
    rescaling: float = 0.0,
    window: tuple[float, float] = (1.0, 0.0),
) -> Any:
    """ComfyUI's skip layer guidance on the pipeline's components: CFG on the transformer's
    velocities; within the noise-level `window` (high, low) either the negative's pass skips
    `layers` (`uncond`) or the denoised estimate x - sigma v moves by scale * (cond -
    cond skipping `layers`), rescaled towards the conditional estimate's spread."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    pos, neg, pooled, neg_pooled = pipe.encode_prompt(
        PROMPT, PROMPT, PROMPT, negative_prompt="", max_sequence_length=77
    )
    latents = pipe.prepare_latents(
        1, 16, SIZE, SIZE, torch.float32, "cpu", torch.Generator("cpu").manual_seed(42)
    )
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(sigmas=list(np.linspace(1.0, 1 / steps, steps)))

    def velocity(t: Any, embeds: Any, pooled_embeds: Any, skip: list[int] | None) -> Any:
        return pipe.transformer(
            hidden_states=latents,
            timestep=t.expand(1),
            encoder_hidden_states=embeds,
            pooled_projections=pooled_embeds,
            skip_layers=skip,
            return_dict=False,
        )[0]

    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            sigma = float(scheduler.sigmas[i])
            active = window[1] <= sigma <= window[0]
            cond = velocity(t, pos, pooled, None)
            skip_uncond = layers if uncond and active else None
            guided = (v_u := velocity(t, neg, neg_pooled, skip_uncond)) + CFG * (cond - v_u)
            if not uncond and active:
                x0 = latents - sigma * guided
                x0_cond = latents - sigma * cond
                x0_skip = latents - sigma * velocity(t, pos, pooled, layers)
                x0 = x0 + (x0_cond - x0_skip) * scale
                if rescaling:
                    factor = x0_cond.std() / x0.std()
                    x0 = x0 * (rescaling * factor + (1 - rescaling))
                guided = (latents - x0) / sigma
            latents = scheduler.step(guided, t, latents, return_dict=False)[0]
        config = pipe.vae.config
        raw = latents / config.scaling_factor + config.shift_factor
        image = pipe.vae.decode(raw, return_dict=False)[0]
    return as_tensor(pipe.image_processor.postprocess(image, output_type="np"))


def shifted(percent: float) -> float:
    t = 1.0 - percent
    return 3.0 * t / (1 + 2.0 * t)


@pytest.mark.slow
def test_dit_simple_skips_on_the_negative_pass(sd3_models: Any, run_sd3: Any) -> None:
    nodes = with_node(
        "SkipLayerGuidanceDiTSimple",
        double_layers="0, 2",
        single_layers="",
        start_percent=START,
        end_percent=END,
    )
    ours = image_of(run_sd3(nodes, ["dec"]))
    pipe = sd3_models["large"].pipe
    window = (shifted(START), shifted(END))
    theirs = manual_reference(pipe, [0, 2], uncond=True, window=window)
    plain = manual_reference(pipe, [0, 2], uncond=True, window=(0.0, 0.0))
    assert (theirs - plain).abs().max().item() > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


@pytest.mark.slow
def test_dit_rescaling_as_comfyui(sd3_models: Any, run_sd3: Any) -> None:
    """The DiT node's rescaling (ComfyUI's: diffusers has none) over the whole schedule,
    single layers ignored on SD3 (it has joint blocks only, as ComfyUI ignores them)."""
    nodes = with_node(
        "SkipLayerGuidanceDiT",
        double_layers="1",
        single_layers="7, 8, 9",
        scale=10.0,
        start_percent=0.0,
        end_percent=1.0,
        rescaling_scale=10.0,
    )
    ours = image_of(run_sd3(nodes, ["dec"]))
    pipe = sd3_models["large"].pipe
    theirs = manual_reference(pipe, [1], scale=10.0, rescaling=10.0)
    unscaled = manual_reference(pipe, [1], scale=10.0)
    assert (theirs - unscaled).abs().max().item() > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


@pytest.mark.slow
def test_flux_dit_equals_pipeline_with_pruned_transformer(flux_models: Any, run_flux: Any) -> None:
    import copy

    from tests.families.test_flux_parity import PROMPT as FLUX_PROMPT
    from tests.families.test_flux_parity import reference as flux_reference
    from tests.families.test_flux_parity import split_workflow as flux_workflow

    nodes = flux_workflow("dev")
    nodes["slg"] = {
        "type": "SkipLayerGuidanceDiT",
        "inputs": {
            "model": ["unet", "model"],
            "double_layers": "0",
            "single_layers": "1",
            "scale": 2.0,
            "start_percent": 0.0,
            "end_percent": 1.0,
            "rescaling_scale": 0.0,
        },
    }
    nodes["k"]["inputs"]["model"] = ["slg", "model"]
    ours = image_of(run_flux(nodes, ["dec"]))

    pipe = flux_models["dev"].pipe
    transformer = pipe.transformer
    pruned = copy.deepcopy(transformer)
    del pruned.transformer_blocks[0]
    del pruned.single_transformer_blocks[1]
    plain = flux_reference(pipe, prompt=FLUX_PROMPT, num_inference_steps=3, guidance_scale=3.5)

    def guided(*args: Any, **kwargs: Any) -> Any:
        kwargs["return_dict"] = False
        cond = type(transformer).forward(transformer, *args, **kwargs)[0]
        skipped = pruned(*args, **kwargs)[0]
        return (cond + 2.0 * (cond - skipped),)

    transformer.forward = guided
    try:
        theirs = flux_reference(pipe, prompt=FLUX_PROMPT, num_inference_steps=3, guidance_scale=3.5)
    finally:
        del transformer.forward
    assert (theirs - plain).abs().max().item() > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


@pytest.mark.slow
def test_chroma_dit_equals_pipeline_with_identity_blocks(
    chroma_models: Any, run_chroma: Any
) -> None:
    """Chroma (its single blocks take the joint sequence alone): the skipped pass by a copy
    of the transformer whose blocks are replaced by identity modules (not deleted: Chroma
    picks each block's modulation by its index)."""
    import copy

    from tests.families.test_chroma_parity import PROMPT as CHROMA_PROMPT
    from tests.families.test_chroma_parity import reference as chroma_reference
    from tests.families.test_chroma_parity import workflow as chroma_workflow

    class PassDouble(torch.nn.Module):
        def forward(self, hidden_states: Any, encoder_hidden_states: Any, **_: Any) -> Any:
            return encoder_hidden_states, hidden_states

    class PassSingle(torch.nn.Module):
        def forward(self, hidden_states: Any, **_: Any) -> Any:
            return hidden_states

    nodes = chroma_workflow(steps=2)
    nodes["slg"] = {
        "type": "SkipLayerGuidanceDiT",
        "inputs": {
            "model": ["unet", "model"],
            "double_layers": "0",
            "single_layers": "0",
            "scale": 2.0,
            "start_percent": 0.0,
            "end_percent": 1.0,
            "rescaling_scale": 0.0,
        },
    }
    nodes["k"]["inputs"]["model"] = ["slg", "model"]
    ours = image_of(run_chroma(nodes, ["dec"]))

    pipe, _ = chroma_models
    transformer = pipe.transformer
    skipping = copy.deepcopy(transformer)
    skipping.transformer_blocks[0] = PassDouble()
    skipping.single_transformer_blocks[0] = PassSingle()
    kwargs = {"prompt": CHROMA_PROMPT, "num_inference_steps": 2, "guidance_scale": 1.0}
    plain = chroma_reference(pipe, **kwargs)

    def guided(*args: Any, **call: Any) -> Any:
        call["return_dict"] = False
        cond = type(transformer).forward(transformer, *args, **call)[0]
        skipped = skipping(*args, **call)[0]
        return (cond + 2.0 * (cond - skipped),)

    transformer.forward = guided
    try:
        theirs = chroma_reference(pipe, **kwargs)
    finally:
        del transformer.forward
    assert (theirs - plain).abs().max().item() > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


SD3_DEFAULTS = {"scale": 3.0, "start_percent": 0.01, "end_percent": 0.15}


def test_unskippable_family_and_missing_layer_are_node_errors() -> None:
    from types import SimpleNamespace

    from easel.models.handles import ModelHandle
    from easel.nodes.skip_layer_guidance import SkipLayerGuidanceDiT, SkipLayerGuidanceSD3

    family = SimpleNamespace(network="unet", label="Stable Diffusion XL", prediction_type="eps")
    model = ModelHandle("sdxl.safetensors", object(), {}, 8, None, family=family)
    with pytest.raises(NodeError, match="Stable Diffusion XL") as error:
        SkipLayerGuidanceSD3.fn(model=model, layers="7, 8, 9", **SD3_DEFAULTS)
    assert error.value.input == "model"

    blocks = SimpleNamespace(transformer_blocks=[object()] * 3)
    sd3 = SimpleNamespace(network="sd3", label="SD3.5 Large", prediction_type="flow")
    model = ModelHandle("sd35.safetensors", blocks, {"shift": 3.0}, 8, None, family=sd3)
    with pytest.raises(NodeError, match="3 double") as error:
        SkipLayerGuidanceDiT.fn(
            model=model,
            double_layers="2, 3",
            single_layers="",
            rescaling_scale=0.0,
            **SD3_DEFAULTS,
        )
    assert error.value.input == "double_layers"
    # no layer listed: the model unchanged, as ComfyUI
    assert SkipLayerGuidanceSD3.fn(model=model, layers="", **SD3_DEFAULTS)["model"] is model
    patched = SkipLayerGuidanceSD3.fn(model=model, layers="1, 2", **SD3_DEFAULTS)["model"]
    (patch,) = patched.post_cfg
    assert patch.double == (1, 2) and patch.single == ()
    assert patch.sigma_start == pytest.approx(shifted(0.01))


def test_comfyui_ui_nodes_convert() -> None:
    """The three nodes in ComfyUI's UI format (MOSS-Image's Simple widgets, Stability's SD3
    preset) become Easel's with the same inputs."""
    from easel.comfy.convert import to_easel

    def model_node(node_id: int, node_type: str, widgets: list[Any], link: int | None) -> Any:
        inputs = [] if link is None else [{"name": "model", "type": "MODEL", "link": link}]
        out = [{"name": "MODEL", "type": "MODEL", "links": [node_id]}]
        return {
            "id": node_id,
            "type": node_type,
            "widgets_values": widgets,
            "inputs": inputs,
            "outputs": out,
        }

    ui = {
        "nodes": [
            model_node(1, "UNETLoader", ["sd3.5_large.safetensors", "default"], None),
            model_node(2, "SkipLayerGuidanceDiTSimple", ["", "22", 0, 0.5], 1),
            model_node(3, "SkipLayerGuidanceSD3", ["7, 8, 9", 2.8, 0.01, 0.2], 2),
            model_node(4, "SkipLayerGuidanceDiT", ["9,10", "9,10", 3, 0.01, 0.8, 0], 3),
        ],
        "links": [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 3, 0, "MODEL"], [3, 3, 0, 4, 0, "MODEL"]],
    }
    nodes = to_easel(ui)["nodes"]
    assert nodes["2"] == {
        "type": "SkipLayerGuidanceDiTSimple",
        "inputs": {
            "double_layers": "",
            "single_layers": "22",
            "start_percent": 0,
            "end_percent": 0.5,
            "model": ["1", "model"],
        },
    }
    assert nodes["3"]["inputs"] == {
        "layers": "7, 8, 9",
        "scale": 2.8,
        "start_percent": 0.01,
        "end_percent": 0.2,
        "model": ["2", "model"],
    }
    assert nodes["4"]["type"] == "SkipLayerGuidanceDiT"
    assert nodes["4"]["inputs"]["rescaling_scale"] == 0
    assert nodes["4"]["inputs"]["single_layers"] == "9,10"


def test_skipped_blocks_come_back_as_they_were() -> None:
    """Inside `skipping` the listed blocks pass their input on; after it (also after an
    error) every block is as before, a forward hook set on the block itself included."""
    from types import SimpleNamespace

    from easel.models.skip_layer_guidance import skipping

    class Block(torch.nn.Module):
        def forward(self, hidden_states: Any, encoder_hidden_states: Any = None) -> Any:
            return encoder_hidden_states, hidden_states * 2

    def hooked(*args: Any, **kwargs: Any) -> Any:
        return "hooked"

    double, single = [Block(), Block()], [Block()]
    double[1].forward = hooked
    transformer = SimpleNamespace(transformer_blocks=double, single_transformer_blocks=single)
    network = SimpleNamespace(transformer=transformer, family=SimpleNamespace(network="flux"))
    x = torch.ones(2)
    with pytest.raises(RuntimeError), skipping(network, [0, 1], [0]):
        assert double[0](hidden_states=x, encoder_hidden_states="txt") == ("txt", x)
        assert double[1](hidden_states=x, encoder_hidden_states="txt") == ("txt", x)
        raise RuntimeError("a failing call")
    assert torch.equal(double[0](hidden_states=x)[1], x * 2)
    assert double[1](hidden_states=x) == "hooked"
    assert "forward" not in vars(double[0]) and "forward" not in vars(single[0])
