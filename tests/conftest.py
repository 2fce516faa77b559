"""Shared fixtures: every test builds its own core; async tests run on asyncio via anyio."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_cwd(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run every test in an empty working directory: no lash.toml is found upward by accident,
    and the default store (``.lash/lash.db`` under the working directory) lands in a temp dir."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
