"""The Quickstart's `easel run`: the default workflow, from any folder, writes its PNG with the
bundled easel-shapes model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import easel
from easel.core.context import Context
from easel.workflow_files import read_workflow
from easel.zoo.shapes.analyse import analyse, score
from easel.zoo.shapes.render_node import RenderShapes, parse_caption

ROOT = Path(__file__).resolve().parents[2]


def test_easel_run_with_no_argument_writes_the_default_image(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "easel", "run"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    [printed] = result.stdout.split()
    image = np.asarray(Image.open(tmp_path / printed).convert("RGB"))
    assert image.shape == (256, 256, 3)
    # The bundled demo model drew what the default prompt asks for.
    workflow = read_workflow(ROOT / "workflows" / "text_to_image.json")
    prompt = workflow["nodes"]["prompt"]["inputs"]["text"]
    verdict = score(analyse(image)[0], parse_caption(prompt))
    assert all(verdict.values()), (prompt, analyse(image)[0])


def test_render_shapes_reads_captions_and_explains_bad_ones():
    image = RenderShapes.call(
        Context(), {"text": "a small green triangle at the top on a black background", "size": 32}
    )["image"]
    assert tuple(image.shape) == (1, 3, 32, 32)
    assert image[0, :, 31, 0].tolist() == pytest.approx([10 / 255] * 3)  # black background
    with pytest.raises(easel.NodeError) as info:
        RenderShapes.call(Context(), {"text": "a fluffy cat", "size": 32})
    assert info.value.input == "text" and "colour" in info.value.message


def test_the_command_keeps_exit_codes_and_output_when_it_skips_teardown(tmp_path):
    """`easel` exits through os._exit once torch is loaded; codes and streams must survive."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    bad = subprocess.run(
        [sys.executable, "-m", "easel", "run", "--set", "sample.steps=0", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert bad.returncode == 2
    assert "node 'sample' (KSampler), input 'steps'" in bad.stdout + bad.stderr
    good = subprocess.run(
        [sys.executable, "-m", "easel", "run", "--json", "-q"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert good.returncode == 0, good.stderr
    report = json.loads(good.stdout)  # complete, although the process skipped its teardown
    assert report["status"] == "succeeded" and len(report["files"]) == 1
