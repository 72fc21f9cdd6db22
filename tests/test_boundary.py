"""The suite reads nothing beside the repository: the guard in tests/boundary.py refuses it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.boundary import PARENT, ROOT, OutsideRepository, outside_repository

SIBLING = os.path.join(PARENT, "shared", "reference", "zulip-openapi.yaml")


@pytest.mark.parametrize("path", [SIBLING, f"{ROOT}/../shared/x", f"{ROOT}-other/file", f"{ROOT}/tests/../../shared/x"])
def test_paths_beside_the_repository_are_recognised(path: str) -> None:
    assert outside_repository(path) is not None


@pytest.mark.parametrize("path", [f"{ROOT}/tests/conftest.py", ROOT, "/tmp/x", "/usr/lib/python3", 3])
def test_paths_in_the_repository_or_elsewhere_are_allowed(path: object) -> None:
    assert outside_repository(path) is None


def test_opening_a_file_beside_the_repository_fails_the_test() -> None:
    with pytest.raises(OutsideRepository, match="outside the repository"):
        open(SIBLING, "rb")  # noqa: SIM115  (the open itself is refused)


def test_listing_the_parent_folder_fails_the_test() -> None:
    with pytest.raises(OutsideRepository):
        os.listdir(os.path.join(PARENT, "shared"))


def test_files_inside_the_repository_open_as_usual() -> None:
    assert Path(ROOT, "pyproject.toml").read_text().startswith("#")
