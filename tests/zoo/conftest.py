"""Shared fixture: a tiny easel-shapes family trained two steps per stage."""

import pytest

from easel.zoo.cli import STAGES, main


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory):
    """Every stage in order (later stages load earlier ones), tiny models, no evaluation."""
    work = tmp_path_factory.mktemp("zoo")
    for stage in STAGES:
        assert (
            main(
                [
                    "train",
                    "shapes",
                    "--stage",
                    stage,
                    "--tiny",
                    "--no-eval",
                    "--work-dir",
                    str(work),
                ]
            )
            == 0
        )
    return work
