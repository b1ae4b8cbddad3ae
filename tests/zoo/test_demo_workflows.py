"""The bundled workflows on the shipped easel-shapes weights: each runs offline and its image
shows what its prompt asks for, as read by the pixel analyser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from easel.batch.runner import ItemRunner, RunnerConfig
from easel.workflow_files import read_workflow
from easel.zoo.shapes.analyse import analyse, score
from easel.zoo.shapes.render_node import parse_caption

ROOT = Path(__file__).resolve().parents[2]

# workflow file -> the side of its image; the image must show node "prompt"'s text
SIDES = {
    "text_to_image.json": 256,
    "unclip_prior.json": 128,
    "cascade_upscale.json": 128,
    "best_of_n_clipscore.json": 128,
    "image_to_image.json": 128,
}


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return ItemRunner(RunnerConfig(output_dir=str(out), torch_threads=2))


@pytest.mark.parametrize("name", sorted(SIDES))
def test_bundled_workflow_draws_its_prompt(name, runner):
    workflow = read_workflow(ROOT / "workflows" / name)
    side = SIDES[name]
    prompt = workflow["nodes"]["prompt"]["inputs"]["text"]
    result = runner.run(workflow, sorted(SIDES).index(name), {})
    assert result["status"] == "succeeded", result["error"]
    [path] = result["files"]
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (side, side, 3)
    verdict = score(analyse(image)[0], parse_caption(prompt))
    assert all(verdict.values()), (name, prompt, analyse(image)[0], verdict)
    if name == "best_of_n_clipscore.json":
        # The kept image's CLIPScore, measured again on it, is the best of the four.
        assert 0.0 < result["scores"]["best.score"] <= 100.0
        assert result["scores"]["score.score"] == pytest.approx(
            result["scores"]["best.score"], abs=1e-3
        )
