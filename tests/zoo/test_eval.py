"""`easel zoo eval`: metrics of an exported family, as a table or one JSON object."""

import json
import math

import numpy as np
import pytest

from easel.zoo.cli import main
from easel.zoo.shapes.fid import frechet_distance

# The metrics issue #4 names.
KEYS = {
    "color_accuracy",
    "shape_accuracy",
    "size_accuracy",
    "position_accuracy",
    "background_accuracy",
    "all_accuracy",
    "clip_score",
    "fid",
    "n",
}


@pytest.fixture(scope="module")
def exported(work_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "easel-shapes"
    assert main(["export", "shapes", "--work-dir", str(work_dir), "--out", str(out)]) == 0
    return out


def test_eval_json_has_every_metric(exported, capsys):
    code = main(["eval", str(exported), "--n", "6", "--steps", "2", "--json"])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) >= KEYS
    assert metrics["n"] == 6 and metrics["steps"] == 2
    for key in KEYS - {"n", "clip_score", "fid"}:
        assert 0.0 <= metrics[key] <= 1.0, key
    assert 0.0 <= metrics["clip_score"] <= 100.0
    assert math.isfinite(metrics["fid"]) and metrics["fid"] >= 0.0
    assert (
        metrics["guidance"]
        == json.loads((exported / "easel.json").read_text())["recommended"]["cfg"]
    )


def test_eval_table_names_the_goals(exported, capsys):
    assert main(["eval", str(exported), "--n", "3", "--steps", "1", "--guidance", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "guidance 1.5" in out
    for key in KEYS:
        assert key in out
    assert "goal >= 95%" in out and "goal >= 90%" in out


def test_eval_two_object_prompts(exported, capsys):
    assert (
        main(["eval", str(exported), "--n", "3", "--steps", "1", "--objects", "2", "--json"]) == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["objects"] == 2 and metrics["two_object_prob"] == 1.0
    assert metrics["goals_met"] is None  # the goals are set for single-object prompts
    assert set(metrics) >= KEYS


def test_eval_unknown_model_is_a_clear_error(capsys):
    assert main(["eval", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_frechet_distance_matches_scipy_sqrtm():
    from scipy import linalg

    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 8))
    b = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8)) * 0.5 + 0.3
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a + 2.0) == pytest.approx(8 * 4.0, rel=1e-6)
