"""`easel convert comfy IN -o OUT.json` through the command line entry point."""

from __future__ import annotations

import json

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from easel.cli.main import main
from easel.comfy.convert import to_easel
from tests.comfy.conftest import DATA, SHARED_COMFY, load_json

BASIC = SHARED_COMFY / "comfyui_script_examples_basic_api_example.api.json"


def test_convert_writes_an_easel_workflow(tmp_path, capsys) -> None:
    out = tmp_path / "sub" / "basic.json"
    assert main(["convert", "comfy", str(BASIC), "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == to_easel(load_json(BASIC))
    err = capsys.readouterr().err
    assert "converted 7 ComfyUI nodes (API format) into 7 Easel nodes" in err
    assert not list(out.parent.glob(".*.tmp"))


def test_convert_ui_file_to_stdout_with_checkpoint(capsys) -> None:
    assert (
        main(
            ["convert", "comfy", str(DATA / "ui_default_plus.json"), "--checkpoint", "easel-shapes"]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["nodes"]["4"]["inputs"]["name"] == "easel-shapes"
    assert printed["nodes"]["3"]["inputs"]["seed"] == 42


def test_convert_comfy_png(tmp_path, capsys) -> None:
    info = PngInfo()
    info.add_text("prompt", BASIC.read_text())
    png = tmp_path / "ComfyUI_00001_.png"
    Image.new("RGB", (2, 2)).save(png, pnginfo=info)
    out = tmp_path / "from_png.json"
    assert main(["convert", "comfy", str(png), "-o", str(out)]) == 0
    assert json.loads(out.read_text())["nodes"] == to_easel(load_json(BASIC))["nodes"]


def test_unsupported_nodes_exit_2_with_the_list(tmp_path, capsys) -> None:
    data = load_json(BASIC)
    data["10"] = {
        "class_type": "FreeU_V2",
        "inputs": {"model": ["4", 0], "b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2},
    }
    data["11"] = {
        "class_type": "DiffControlNetLoader",
        "inputs": {"model": ["4", 0], "control_net_name": "diff.safetensors"},
    }
    source = tmp_path / "custom.json"
    source.write_text(json.dumps(data))
    out = tmp_path / "out.json"
    assert main(["convert", "comfy", str(source), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "node '10' (FreeU_V2)" in err and "node '11' (DiffControlNetLoader)" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_bad_inputs_exit_2_without_traceback(tmp_path, capsys) -> None:
    cases = {
        "missing.json": None,
        "broken.json": "{ nope",
        "easel.json": json.dumps({"format": "easel.workflow", "version": 1, "nodes": {}}),
        "other.json": json.dumps({"hello": "world"}),
    }
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        assert main(["convert", "comfy", str(tmp_path / name)]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err, name
    plain = tmp_path / "plain.png"
    Image.new("RGB", (2, 2)).save(plain)
    assert main(["convert", "comfy", str(plain)]) == 2
    assert "carries no ComfyUI workflow" in capsys.readouterr().err
