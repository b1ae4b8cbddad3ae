"""`comfy-script` (a Python client that builds nodes from /object_info and drives ComfyUI
over /prompt and /ws) drives an Easel server: Easel's nodes under their names, ComfyUI's
names the importer maps, progress, and the saved image. It is in the dev extra."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.server.serverproc import Server, free_port

CLIENT = textwrap.dedent("""
    import json, sys
    from comfy_script.runtime import Workflow, load
    load(sys.argv[1] + "/")
    from comfy_script.runtime.nodes import (
        CheckpointLoader, CLIPTextEncode, EmptyLatentImage, KSampler, SaveImage, TextEncode,
        VAEDecode)
    with Workflow(wait=True):
        model, clip, vae = CheckpointLoader(name="easel-shapes")
        positive = TextEncode(clip=clip, text="a large red circle on the left")
        negative = CLIPTextEncode(text="", clip=clip)  # a ComfyUI name, mixed in
        latent = EmptyLatentImage(width=32, height=32, batch_size=1)
        latent = KSampler(model=model, positive=positive, negative=negative, latent=latent,
                          seed=7, steps=4, cfg=2.0)
        SaveImage(image=VAEDecode(vae=vae, latent=latent), filename_prefix="comfy-script")
    print(json.dumps({"done": True}))
""")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("comfy-script-client") / "data"
    process = Server(data, free_port())
    yield process
    process.stop()


def test_comfy_script_drives_easel(server, tmp_path) -> None:
    import importlib.util

    assert importlib.util.find_spec("comfy_script") is not None, (
        "comfy-script is not installed: pip install -e '.[dev]'"
    )
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    done = subprocess.run(
        [sys.executable, str(script), server.base],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    # comfy-script prints its own queue messages, some without a line end: the script's
    # last line may share a line with one of them
    assert done.stdout.rstrip().endswith('{"done": true}'), (
        done.stdout[-2000:] + done.stderr[-2000:]
    )
    runs = server.get("/api/runs")["runs"]
    assert [r["status"] for r in runs] == ["succeeded"]
    files = runs[0]["summary"]["files"]
    assert len(files) == 1 and Path(files[0]).name == "comfy-script_00001.png"
    status, body = server.call("GET", "/view?filename=comfy-script_00001.png&type=output")
    assert status == 200
    with Image.open(io.BytesIO(body)) as image:
        assert image.size == (32, 32)
