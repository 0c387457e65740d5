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


@pytest.fixture(scope="session")
def tiny_multianet(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, synthetic data root) of a 2-epoch multianet run (attention_scale none) at 32 px on 6 synthetic
    images, one step per epoch: after step 2, alpha is non-zero. A few seconds."""
    import mdbd.paths
    from mdbd.config import load_config
    from mdbd.train import train

    data = tmp_path_factory.mktemp("tiny-multianet")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mdbd.paths, "DATA_DIR", data)
        cfg = load_config("smoke", preset="multianet", backbone_weights="none", image_size=32, epochs=2,
                          batch_size=6, data_root=str(data / "synth"), run_dir=str(data / "run"),
                          **{"synth.train_images": 6, "synth.test_images": 2, "synth.image_size": 40})
        return train(cfg, progress=False).checkpoint, data / "synth"
