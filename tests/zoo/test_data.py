"""The shapes data generator: determinism, held-out combinations, captions and rendering."""

import numpy as np

from easel.zoo.shapes.data import (
    DEFAULT_BACKGROUND,
    DEFAULT_POSITION,
    DEFAULT_SIZE,
    HELD_OUT,
    SceneConfig,
    all_captions,
    is_held_out,
    make_batch,
    step_seed,
)


def test_same_seed_same_batch_and_different_seed_differs():
    a, b = make_batch(7, 64), make_batch(7, 64)
    assert np.array_equal(a.images, b.images)
    assert a.captions == b.captions
    c = make_batch(8, 64)
    assert not np.array_equal(a.images, c.images)


def test_step_seed_is_stable_and_distinct():
    assert step_seed(0, "unet", 5) == step_seed(0, "unet", 5)
    assert len({step_seed(0, stage, s) for stage in ("vae", "unet") for s in range(100)}) == 200


def test_held_out_combinations_never_in_training_batches():
    seen_triples = set()
    for step in range(40):
        batch = make_batch(step_seed(0, "unet", step), 128)
        for scene in batch.scenes:
            for obj in scene.objects:
                assert not is_held_out(obj.color, obj.shape, obj.position), scene.caption
                seen_triples.add((obj.color, obj.shape, obj.position))
    # Every attribute pair inside a held-out triple is still seen in training.
    for color, shape, position in HELD_OUT:
        assert any(c == color and s == shape for c, s, _ in seen_triples)
        assert any(c == color and p == position for c, _, p in seen_triples)
        assert any(s == shape and p == position for _, s, p in seen_triples)


def test_held_out_only_mode_draws_held_out_objects():
    batch = make_batch(3, 50, config=SceneConfig(held_out="only", two_object_prob=0.0))
    assert all(is_held_out(o.color, o.shape, o.position) for s in batch.scenes for o in s.objects)


def test_captions_and_dropped_words_mean_defaults():
    batch = make_batch(11, 400)
    for scene in batch.scenes:
        words = scene.caption.split()
        assert scene.caption.startswith("a ")
        for obj in scene.objects:
            assert obj.color in words and obj.shape in words
            if obj.size not in words:
                assert obj.size == DEFAULT_SIZE
        if "background" not in words:
            assert scene.background == DEFAULT_BACKGROUND
        if len(scene.objects) == 1 and not any(
            w in words for w in ("left", "right", "top", "bottom", "center")
        ):
            assert scene.objects[0].position == DEFAULT_POSITION
    assert any(len(s.objects) == 2 for s in batch.scenes)
    assert "a large red circle on the left on a white background" in all_captions()


def test_renders_at_upscaler_sizes_with_same_geometry():
    for size in (32, 64, 128):
        batch = make_batch(5, 4, size=size)
        assert batch.images.shape == (4, size, size, 3) and batch.images.dtype == np.uint8
    small = make_batch(5, 4, size=32).images.astype(np.float32)
    large = make_batch(5, 4, size=64).images.astype(np.float32)
    pooled = large.reshape(4, 32, 2, 32, 2, 3).mean(axis=(2, 4))
    assert np.abs(pooled - small).mean() < 2.0
