"""`easel plugins new NAME` writes a working plugin distribution; `easel plugins` reports
problems in one line each."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

from easel.cli.main import main


def test_new_plugin_is_a_distribution_whose_own_tests_pass(tmp_path, capsys) -> None:
    assert main(["plugins", "new", "colour-tools", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "easel-colour-tools"
    assert f"wrote {root}" in capsys.readouterr().out
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "easel-colour-tools"
    assert project["project"]["entry-points"]["easel"] == {"colour-tools": "easel_colour_tools"}
    assert (root / "easel_colour_tools" / "web" / "index.js").read_text().startswith("// Editor")
    tests = root / "tests" / "test_easel_colour_tools.py"
    # Its tests, run against the source folder (the entry point test needs `pip install -e`).
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tests),
            "-k",
            "not entry_point",
        ],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "3 passed" in ran.stdout


def test_new_refuses_bad_names_and_existing_folders(tmp_path, capsys) -> None:
    assert main(["plugins", "new", "Bad Name", "--dir", str(tmp_path)]) == 2
    assert "use lowercase letters, digits and hyphens" in capsys.readouterr().err
    (tmp_path / "easel-taken").mkdir()
    assert main(["plugins", "new", "taken", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_plugins_listing_gives_one_line_problems(tmp_path, capsys) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text(
        "import easel\n\n@easel.hookimpl\ndef register_nodes(register):\n"
        "    raise RuntimeError('no luck\\nsecond line')\n"
    )
    assert main(["plugins", "--plugin", str(broken)]) == 0
    out = capsys.readouterr().out
    assert "! register_nodes failed: RuntimeError: no luck" in out
    assert "Traceback" not in out and "second line" not in out


def test_commands_warn_in_one_line_and_keep_tracebacks_for_verbose(tmp_path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text(
        "import easel\n\n@easel.hookimpl\ndef register_nodes(register):\n"
        "    raise RuntimeError('no luck')\n"
    )

    def nodes(*extra: str) -> str:
        ran = subprocess.run(
            [sys.executable, "-m", "easel", *extra, "nodes", "--plugin", str(broken)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ran.returncode == 0, ran.stderr
        return ran.stderr

    quiet = nodes()
    assert quiet.strip() == (
        "warning: plugin 'broken': register_nodes failed: RuntimeError: no luck"
    )
    assert "Traceback (most recent call last)" in nodes("-v")
