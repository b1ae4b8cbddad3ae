"""Client-facing messages show the server's folders by name and no other absolute path."""

from __future__ import annotations

from easel.server.redact import redact_paths

ROOTS = ("input=/srv/easel/data/input", "data=/srv/easel/data", "home=/home/ann")


def test_known_folders_are_named_and_the_longest_root_wins() -> None:
    assert redact_paths("cannot open /srv/easel/data/input/cat.png", ROOTS) == (
        "cannot open <input>/cat.png"
    )
    assert redact_paths("see /srv/easel/data/queue.sqlite3", ROOTS) == "see <data>/queue.sqlite3"
    assert redact_paths("in /home/ann/models/x.safetensors", ROOTS) == (
        "in <home>/models/x.safetensors"
    )


def test_other_absolute_paths_keep_only_their_last_part() -> None:
    assert redact_paths("no such file: /opt/weights/sd15/model.ckpt (errno 2)") == (
        "no such file: .../model.ckpt (errno 2)"
    )
    assert redact_paths(r"failed at C:\Users\ann\x.png") == "failed at .../x.png"


def test_text_without_paths_is_unchanged() -> None:
    for text in (
        "expects IMAGE/LATENT",
        "ratio 1/2",
        "see http://localhost:8188/api/x",
        "value 3 is over 2",
        "a/b relative",
    ):
        assert redact_paths(text, ROOTS) == text
