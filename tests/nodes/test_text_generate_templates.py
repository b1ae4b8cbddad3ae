"""ComfyUI's image_krea2_turbo_t2i template with its prompt enhancement on (the template's
default): TextGenerate runs on the tiny Krea 2 CLIP inside the real workflow, samples as
transformers' `generate` does with the template's settings and seed on the whole Qwen3-VL
(head tied), and its answer is the prompt the image is made from."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.fixtures import krea2_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

krea2_models = krea2_family.krea2_models
NEW_TOKENS = 24


@pytest.fixture(scope="module")
def template_root(krea2_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.families import test_krea2_templates

    return test_krea2_templates.template_root.__wrapped__(krea2_models, tmp_path_factory)


def test_krea2_template_enhances_its_prompt_with_text_generate(
    template_root: Path, krea2_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import Qwen3VLForConditionalGeneration

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.models.text_generation import chat_prompt, end_token_ids
    from easel.workflow_edit import set_input
    from tests.families.test_krea2_templates import SIZE, STEPS, _only, template

    roots = [template_root / "models", template_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = to_easel(template("image_krea2_turbo_t2i"))
    nodes = workflow["nodes"]
    set_input(workflow, f"{_only(nodes, 'EmptyLatent')}.width", SIZE)
    set_input(workflow, f"{_only(nodes, 'EmptyLatent')}.height", SIZE)
    set_input(workflow, f"{_only(nodes, 'KSampler')}.steps", STEPS)
    generate = _only(nodes, "TextGenerate")
    set_input(workflow, f"{generate}.max_length", NEW_TOKENS)
    settings = nodes[generate]["inputs"]
    assert settings["sampling_mode"] == "on" and settings["thinking"] is False
    [switch] = [
        n for n in nodes.values() if n["inputs"].get("on_true") == [generate, "generated_text"]
    ]
    assert nodes[switch["inputs"]["switch"][0]]["inputs"]["value"] is True  # enhancement on

    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path, keep_values=True)
    assert result.ok, result.failures
    answer = result.values[generate]["generated_text"]
    assert answer
    encode = _only(nodes, "TextEncode")
    text_source = nodes[encode]["inputs"]["text"][0]
    assert result.values[text_source]["output"] == answer  # the image's prompt is the answer

    # transformers' own sampling on the whole Qwen3-VL, the template's settings and seed
    pipe = krea2_models.pipe
    tokenizer = pipe.tokenizer
    config = pipe.text_encoder.config
    config.tie_word_embeddings = True
    whole = Qwen3VLForConditionalGeneration(config).eval()
    whole.model.load_state_dict(pipe.text_encoder.state_dict())
    whole.tie_weights()
    prompt_source = nodes[generate]["inputs"]["prompt"][0]
    text, has_special = chat_prompt(tokenizer, result.values[prompt_source]["text"])
    ids = tokenizer([text], add_special_tokens=not has_special, return_tensors="pt")
    torch.manual_seed(int(settings["seed"]))
    with torch.no_grad():
        expected = whole.generate(
            **ids,
            max_new_tokens=NEW_TOKENS,
            do_sample=True,
            temperature=settings["temperature"],
            top_k=settings["top_k"],
            top_p=settings["top_p"],
            min_p=settings["min_p"],
            repetition_penalty=settings["repetition_penalty"],
            eos_token_id=end_token_ids(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
        )[0, ids["input_ids"].shape[1] :]
    assert answer == tokenizer.decode(expected, skip_special_tokens=True).strip()
    assert result.ui  # the image was saved
