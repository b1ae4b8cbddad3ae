"""LoadImage, SaveImage and PreviewImage: through the executor, as users run them, and units."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image as PILImage

from easel.core.context import Context
from easel.core.executor import Executor
from easel.core.graph import WorkflowError
from easel.core.node import NodeError
from easel.core.plugins import Registry, load_plugins
from easel.nodes import image_io
from easel.nodes.image_io import LoadImage, PreviewImage, SaveImage
from easel.pngmeta import read_text_chunks, workflow_from_png


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_plugins(entry_points=False)


def workflow(image: str, prefix: str = "shots/cat") -> dict[str, Any]:
    return {
        "format": "easel.workflow",
        "version": 1,
        "nodes": {
            "load": {"type": "LoadImage", "inputs": {"image": image}},
            "save": {
                "type": "SaveImage",
                "inputs": {"image": ["load", "image"], "filename_prefix": prefix},
            },
        },
    }


def write_picture(path: Path, size=(6, 4), colour=(10, 200, 30), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new(mode, size, colour).save(path)
    return path


def ctx_for(tmp_path: Path, **services: Any) -> Context:
    return Context(output_dir=tmp_path / "out", services=services)


# -- through the executor ----------------------------------------------------------------------
def test_load_then_save_writes_numbered_pngs_with_the_workflow(tmp_path, registry) -> None:
    source = write_picture(tmp_path / "in.png")
    flow = workflow(str(source))
    executor = Executor(registry, output_dir=tmp_path / "out", services={"workflow": flow})
    first = executor.run(flow)
    second = executor.run(flow)
    assert first.status == second.status == "succeeded"
    assert first.ui["save"] == {"files": ["shots/cat_00001.png"]}
    # An identical re-run executes nothing: the file it lists is the one already written.
    assert second.ui["save"] == {"files": ["shots/cat_00001.png"]}
    assert second.node_status == {"load": "cached", "save": "cached"}
    # Another output folder is outside state of the output node: it saves again there.
    elsewhere = executor.run(flow, output_dir=tmp_path / "other")
    assert elsewhere.node_status == {"load": "cached", "save": "executed"}
    assert (tmp_path / "other" / "shots" / "cat_00001.png").is_file()
    saved = tmp_path / "out" / "shots" / "cat_00001.png"
    with PILImage.open(saved) as picture:
        assert picture.size == (6, 4)
        assert picture.getpixel((0, 0)) == (10, 200, 30)
    assert workflow_from_png(saved) == flow
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")]


def test_edited_input_file_runs_again(tmp_path, registry) -> None:
    source = write_picture(tmp_path / "in.png")
    flow = workflow(str(source))
    executor = Executor(registry, output_dir=tmp_path / "out")
    executor.run(flow)
    assert executor.run(flow).node_status["load"] == "cached"
    write_picture(source, colour=(250, 0, 0))
    again = executor.run(flow)
    assert again.node_status["load"] == "executed"
    assert again.node_status["save"] == "executed"
    with PILImage.open(tmp_path / "out" / "shots" / "cat_00002.png") as picture:
        assert picture.getpixel((1, 1)) == (250, 0, 0)


def test_missing_file_is_reported_at_validation(tmp_path, registry) -> None:
    executor = Executor(registry, output_dir=tmp_path / "out")
    with pytest.raises(WorkflowError) as caught:
        executor.validate(workflow(str(tmp_path / "nope.png")))
    [problem] = caught.value.problems
    assert (problem.node, problem.input) == ("load", "image")
    assert "no such image file" in problem.message


def test_prefix_escaping_the_output_folder_is_refused_at_validation(tmp_path, registry) -> None:
    source = write_picture(tmp_path / "in.png")
    executor = Executor(registry, output_dir=tmp_path / "out")
    for prefix in ("../evil", "/etc/evil", "a/../../evil", "", "folder/", "C:\\evil"):
        with pytest.raises(WorkflowError) as caught:
            executor.validate(workflow(str(source), prefix))
        [problem] = caught.value.problems
        assert (problem.node, problem.input) == ("save", "filename_prefix"), prefix


def test_upload_folder_names_only(tmp_path, registry) -> None:
    uploads = tmp_path / "uploads"
    write_picture(uploads / "cat.png")
    write_picture(uploads / "albums" / "dog.png")
    secret = write_picture(tmp_path / "secret.png")
    (uploads / "sneaky.png").symlink_to(secret)
    (uploads / "linked").symlink_to(tmp_path)
    executor = Executor(registry, output_dir=tmp_path / "out", services={"input_dir": uploads})
    assert executor.run(workflow("cat.png")).status == "succeeded"
    assert executor.run(workflow("albums/dog.png")).status == "succeeded"
    refused = {
        "../secret.png": "not the name of an uploaded image",
        str(secret): "not the name of an uploaded image",
        "albums/../../secret.png": "not the name of an uploaded image",
        "..\\secret.png": "not the name of an uploaded image",
        "sneaky.png": "outside the upload folder",
        "linked/secret.png": "outside the upload folder",
        "missing.png": "no uploaded image named",
    }
    for name, reason in refused.items():
        with pytest.raises(WorkflowError) as caught:
            executor.validate(workflow(name))
        [problem] = caught.value.problems
        assert problem.input == "image" and reason in problem.message, name


def test_refused_at_run_time_too(tmp_path) -> None:
    """The node checks again when it runs (a workflow may skip validation by linking the name)."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    write_picture(tmp_path / "secret.png")
    with pytest.raises(NodeError) as caught:
        LoadImage.call(ctx_for(tmp_path, input_dir=uploads), {"image": "../secret.png"})
    assert caught.value.input == "image"


def test_preview_goes_to_the_preview_folder(tmp_path, registry) -> None:
    source = write_picture(tmp_path / "in.png")
    flow = {
        "format": "easel.workflow",
        "version": 1,
        "nodes": {
            "load": {"type": "LoadImage", "inputs": {"image": str(source)}},
            "show": {"type": "PreviewImage", "inputs": {"image": ["load", "image"]}},
        },
    }
    result = Executor(registry, output_dir=tmp_path / "out").run(flow)
    assert result.ui["show"] == {"files": ["preview/preview_00001.png"]}
    assert read_text_chunks(tmp_path / "out" / "preview" / "preview_00001.png") == {}


# -- LoadImage units ---------------------------------------------------------------------------
def load(ctx: Context, name: str) -> torch.Tensor:
    return LoadImage.call(ctx, {"image": name})["image"]


def test_loaded_image_is_float_bchw_in_unit_range(tmp_path) -> None:
    path = write_picture(tmp_path / "a.png", size=(5, 3), colour=(255, 0, 51))
    image = load(ctx_for(tmp_path), str(path))
    assert image.dtype == torch.float32 and image.shape == (1, 3, 3, 5)
    assert torch.equal(image[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.2]))


def test_alpha_grey_and_sixteen_bit_become_rgb(tmp_path) -> None:
    ctx = ctx_for(tmp_path)
    rgba = write_picture(tmp_path / "rgba.png", colour=(10, 20, 30, 0), mode="RGBA")
    assert load(ctx, str(rgba)).shape == (1, 3, 4, 6)
    grey = write_picture(tmp_path / "grey.png", colour=128, mode="L")
    assert torch.allclose(load(ctx, str(grey))[0, :, 0, 0], torch.full((3,), 128 / 255))
    deep = tmp_path / "deep.png"
    PILImage.new("I;16", (4, 4), 65535 // 4).save(deep)
    values = load(ctx, str(deep))
    assert values.shape == (1, 3, 4, 4)
    assert torch.allclose(values, torch.full_like(values, (65535 // 4) / 65535))


def test_mask_comes_from_alpha(tmp_path) -> None:
    """LoadImage's MASK is 1 where the picture is transparent (ComfyUI's rule), 0 without
    an alpha channel; one mask per frame, at the image's size."""
    ctx = ctx_for(tmp_path)
    picture = PILImage.new("RGBA", (4, 2), (200, 10, 10, 255))
    picture.putpixel((0, 0), (0, 0, 0, 0))
    picture.putpixel((3, 1), (0, 0, 0, 51))
    picture.save(tmp_path / "cut.png")
    out = LoadImage.call(ctx, {"image": str(tmp_path / "cut.png")})
    assert out["mask"].shape == (1, 2, 4) and out["mask"].dtype == torch.float32
    assert out["mask"][0, 0, 0] == 1.0 and out["mask"][0, 0, 1] == 0.0
    assert torch.isclose(out["mask"][0, 1, 3], torch.tensor(0.8))
    rgb = write_picture(tmp_path / "rgb.png", size=(5, 3), colour=(1, 2, 3))
    plain = LoadImage.call(ctx, {"image": str(rgb)})["mask"]
    assert plain.shape == (1, 3, 5) and not plain.any()


def test_exif_orientation_is_applied(tmp_path) -> None:
    picture = PILImage.new("RGB", (6, 4), (0, 0, 0))
    exif = picture.getexif()
    exif[0x0112] = 6  # rotated: displayed 90 degrees clockwise
    path = tmp_path / "phone.jpg"
    picture.save(path, exif=exif)
    assert load(ctx_for(tmp_path), str(path)).shape == (1, 3, 6, 4)


def test_animated_frames_become_a_batch(tmp_path) -> None:
    frames = [PILImage.new("RGB", (4, 4), (i * 60, 0, 0)) for i in range(3)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert load(ctx_for(tmp_path), str(path)).shape == (3, 3, 4, 4)


def test_not_an_image_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(NodeError, match=r"cannot read notes\.png as an image"):
        load(ctx_for(tmp_path), str(path))


def test_fingerprint_is_the_content_hash(tmp_path) -> None:
    ctx = ctx_for(tmp_path)
    a = write_picture(tmp_path / "a.png")
    b = write_picture(tmp_path / "b.png")
    assert LoadImage.fingerprint(ctx, {"image": str(a)}) == LoadImage.fingerprint(
        ctx, {"image": str(b)}
    )
    write_picture(b, colour=(1, 2, 3))
    assert LoadImage.fingerprint(ctx, {"image": str(a)}) != LoadImage.fingerprint(
        ctx, {"image": str(b)}
    )


# -- SaveImage units ---------------------------------------------------------------------------
def save(ctx: Context, image: torch.Tensor, prefix: str = "img") -> list[str]:
    return SaveImage.call(ctx, {"image": image, "filename_prefix": prefix})["ui"]["files"]


def test_batches_channels_and_rounding(tmp_path) -> None:
    ctx = ctx_for(tmp_path)
    batch = torch.zeros(2, 3, 2, 2)
    batch[1, 0] = 1.5  # clamped
    batch[0, 1] = 0.5  # 127.5 rounds to 128
    assert save(ctx, batch) == ["img_00001.png", "img_00002.png"]
    with PILImage.open(ctx.output_dir / "img_00001.png") as first:
        assert first.getpixel((0, 0)) == (0, 128, 0)
    with PILImage.open(ctx.output_dir / "img_00002.png") as second:
        assert second.getpixel((0, 0)) == (255, 0, 0)
    with PILImage.open(ctx.output_dir / save(ctx, torch.ones(1, 1, 2, 2), "grey")[0]) as grey:
        assert grey.mode == "L"
    with PILImage.open(ctx.output_dir / save(ctx, torch.ones(1, 4, 2, 2), "alpha")[0]) as alpha:
        assert alpha.mode == "RGBA"
    with pytest.raises(NodeError, match="expected an image tensor"):
        save(ctx, torch.ones(3, 2, 2))


def test_numbering_never_overwrites(tmp_path) -> None:
    ctx = ctx_for(tmp_path)
    ctx.output_dir.mkdir(parents=True)
    (ctx.output_dir / "img_00007.png").write_bytes(b"keep me")
    (ctx.output_dir / "img_extra_00050.png").write_bytes(b"another prefix")
    assert save(ctx, torch.zeros(1, 3, 2, 2)) == ["img_00008.png"]
    assert (ctx.output_dir / "img_00007.png").read_bytes() == b"keep me"


def test_a_name_taken_while_writing_is_skipped(tmp_path, monkeypatch) -> None:
    """Another process claims the number between the scan and the publish."""
    ctx = ctx_for(tmp_path)
    real_link = os.link

    def racing_link(src: Any, dst: Any) -> None:
        if Path(dst).name == "img_00001.png" and not Path(dst).exists():
            Path(dst).write_bytes(b"the other writer")
        real_link(src, dst)

    monkeypatch.setattr(image_io.os, "link", racing_link)
    assert save(ctx, torch.zeros(1, 3, 2, 2)) == ["img_00002.png"]
    assert (ctx.output_dir / "img_00001.png").read_bytes() == b"the other writer"


def test_without_hard_links_it_still_never_overwrites(tmp_path, monkeypatch) -> None:
    ctx = ctx_for(tmp_path)

    def no_links(src: Any, dst: Any) -> None:
        raise OSError("hard links not supported")

    monkeypatch.setattr(image_io.os, "link", no_links)
    assert save(ctx, torch.zeros(2, 3, 2, 2)) == ["img_00001.png", "img_00002.png"]
    assert not list(ctx.output_dir.glob(".*.tmp"))


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    ctx = ctx_for(tmp_path)

    def broken_save(self: Any, fp: Any, *args: Any, **kwargs: Any) -> None:
        fp.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(PILImage.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save(ctx, torch.zeros(1, 3, 2, 2))
    assert list(ctx.output_dir.iterdir()) == []


def test_concurrent_saves_get_distinct_complete_files(tmp_path) -> None:
    ctx = ctx_for(tmp_path)
    results: list[list[str]] = []
    lock = threading.Lock()

    def worker(value: float) -> None:
        files = save(ctx, torch.full((1, 3, 8, 8), value))
        with lock:
            results.append(files)

    threads = [threading.Thread(target=worker, args=(i / 10,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = sorted(f for files in results for f in files)
    assert names == [f"img_{n:05d}.png" for n in range(1, 9)]
    for name in names:
        with PILImage.open(ctx.output_dir / name) as picture:
            picture.load()


def test_prefix_through_a_link_outside_is_refused(tmp_path) -> None:
    ctx = ctx_for(tmp_path)
    ctx.output_dir.mkdir(parents=True)
    (ctx.output_dir / "elsewhere").symlink_to(tmp_path)
    with pytest.raises(NodeError, match="leads outside the output folder"):
        save(ctx, torch.zeros(1, 3, 2, 2), "elsewhere/x")


def test_parameters_summary_for_image_viewers(tmp_path) -> None:
    flow = {
        "format": "easel.workflow",
        "version": 1,
        "nodes": {
            "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "easel-shapes"}},
            "pos": {
                "type": "TextEncode",
                "inputs": {"clip": ["ckpt", "clip"], "text": "a red circle"},
            },
            "neg": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": "blur"}},
            "seed": {"type": "Seed", "inputs": {"seed": 99}},
            "lat": {"type": "EmptyLatent", "inputs": {"width": 64, "height": 32}},
            "ks": {
                "type": "KSampler",
                "inputs": {
                    "model": ["ckpt", "model"],
                    "positive": ["pos", "conditioning"],
                    "negative": ["neg", "conditioning"],
                    "latent": ["lat", "latent"],
                    "seed": ["seed", "seed"],
                    "steps": 4,
                    "cfg": 5.5,
                    "sampler_name": "euler",
                },
            },
            "dec": {
                "type": "VAEDecode",
                "inputs": {"vae": ["ckpt", "vae"], "latent": ["ks", "latent"]},
            },
            "save": {"type": "SaveImage", "inputs": {"image": ["dec", "image"]}},
        },
    }
    ctx = Context(node_id="save", output_dir=tmp_path, services={"workflow": flow})
    [name] = save(ctx, torch.zeros(1, 3, 2, 2), "p")
    chunks = read_text_chunks(tmp_path / name)
    assert chunks["parameters"] == (
        "a red circle\nNegative prompt: blur\n"
        "Steps: 4, Sampler: euler, CFG scale: 5.5, Seed: 99, "
        "Size: 64x32, Model: easel-shapes"
    )


def test_nodes_do_not_import_torch_at_import_time() -> None:
    import subprocess
    import sys

    code = (
        "import sys, easel.nodes.image_io, easel.nodes.comfy_compat, easel.pngmeta, "
        "easel.comfy.convert; print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "False"


def test_declared_interface() -> None:
    assert set(LoadImage.outputs) == {"image", "mask"}
    assert LoadImage.inputs["image"].info.widget == "image_upload"
    assert SaveImage.output_node and PreviewImage.output_node
    assert SaveImage.inputs["filename_prefix"].default == "easel"
