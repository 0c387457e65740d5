"""Shared fixtures: keep them small and generic."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def shared_data() -> Path:
    """$MDBD_SHARED_DATA (the real CUHK/DUT pieces), or skip with the reason."""
    from mdbd.paths import SHARED_DATA_ENV, shared_data_root

    root = shared_data_root()
    if root is None:
        pytest.skip(f"real dataset pieces not available: set ${SHARED_DATA_ENV} to a folder like ../shared/data")
    return root


@pytest.fixture(scope="session")
def smoke_synthetic(tmp_path_factory) -> Path:
    """A smoke-size synthetic benchmark with procedural masks (generated once per test session, ~2 s)."""
    from mdbd.data.synth import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("synthetic") / "smoke-seed0", profile="smoke", seed=0,
                              progress=False, masks="procedural")
