"""The pixel analyser is the evaluation oracle: exact on ground truth, tolerant of blur."""

import numpy as np
from scipy.ndimage import gaussian_filter

from easel.zoo.shapes.analyse import ATTRIBUTES, analyse, connected_components, score
from easel.zoo.shapes.data import SceneConfig, make_batch
from easel.zoo.shapes.evaluate import adherence


def _accuracy(images, scenes):
    results = [score(a, s) for a, s in zip(analyse(images), scenes, strict=True)]
    return {k: float(np.mean([r[k] for r in results])) for k in (*ATTRIBUTES, "count", "all")}


def test_exact_on_thousands_of_rendered_samples():
    batch = make_batch(1234, 2000, config=SceneConfig(held_out="allow"))
    accuracy = _accuracy(batch.images, batch.scenes)
    assert accuracy == {k: 1.0 for k in accuracy}


def test_exact_at_upscaled_sizes():
    for size, n in ((64, 150), (128, 30)):
        batch = make_batch(99, n, size=size, config=SceneConfig(held_out="allow"))
        assert _accuracy(batch.images, batch.scenes)["all"] == 1.0


def test_tolerates_mild_blur_and_noise():
    batch = make_batch(5, 300, config=SceneConfig(held_out="allow"))
    rng = np.random.default_rng(0)
    blurred = gaussian_filter(batch.images.astype(np.float32), sigma=(0, 0.5, 0.5, 0))
    noisy = np.clip(blurred + rng.normal(0, 5, blurred.shape), 0, 255)
    accuracy = _accuracy(noisy, batch.scenes)
    assert accuracy["all"] == 1.0, accuracy


def test_reads_a_known_image():
    from easel.zoo.shapes.data import Scene, ShapeObject, render

    scene = Scene((ShapeObject("blue", "triangle", "small", "right"),), "black", "")
    (found,) = analyse(render([scene], 32, jitter=False))
    assert found.background == "black"
    (obj,) = found.objects
    assert (obj.color, obj.shape, obj.size, obj.position) == ("blue", "triangle", "small", "right")


def test_empty_image_fails_object_attributes():
    batch = make_batch(2, 1, config=SceneConfig(two_object_prob=0.0))
    blank = np.full_like(batch.images, 250)
    result = score(analyse(blank)[0], batch.scenes[0])
    assert not result["color"] and not result["shape"] and not result["all"]


def test_connected_components_separates_and_joins():
    mask = np.zeros((1, 6, 6), bool)
    mask[0, 0, 0:3] = True
    mask[0, 1, 2] = True
    mask[0, 4:6, 4:6] = True
    labels = connected_components(mask)[0]
    assert len(np.unique(labels[labels > 0])) == 2
    assert labels[0, 0] == labels[1, 2] != labels[5, 5]


def test_adherence_of_ground_truth_is_perfect():
    batch = make_batch(3, 40, config=SceneConfig(held_out="only", two_object_prob=0.0))
    metrics = adherence(batch.images, batch.scenes)
    assert metrics["all_accuracy"] == 1.0 and metrics["n"] == 40
