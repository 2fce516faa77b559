"""Shared fixtures: every test builds its own core; async tests run on asyncio via anyio."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
