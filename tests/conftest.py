"""Shared fixtures: keep them small and generic."""

from __future__ import annotations

from pathlib import Path

import pytest
from cuhk_ids import CUHK_TEST_IDS, CUHK_TRAIN_IDS


@pytest.fixture
def shared_data() -> Path:
    """$MDBD_SHARED_DATA (the real CUHK/DUT pieces), or skip with the reason."""
    from mdbd.core.paths import SHARED_DATA_ENV, shared_data_root

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


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A private data folder (synthetic set, uint8 and frozen-feature caches) shared by one test module's runs."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def private_data_dir(monkeypatch, data_dir) -> Path:
    """mdbd's data folder, here and in the processes a test starts, pointed at `data_dir` (never data/ of the
    checkout). Modules that train opt in with `pytestmark = pytest.mark.usefixtures("private_data_dir")`."""
    monkeypatch.setenv("MDBD_DATA_DIR", str(data_dir))  # mdbd.core.paths.data_dir() reads it when called
    return data_dir




@pytest.fixture
def cuhk_full(shared_data) -> Path:
    """$MDBD_SHARED_DATA/cuhk-full (the 704 defocus pairs, official layout), or skip with the reason."""
    root = shared_data / "cuhk-full"
    if not (root / "gt").is_dir():
        pytest.skip(f"the full CUHK set is not in {root}")
    return root


@pytest.fixture(scope="session")
def cuhk_subset(tmp_path_factory) -> Path:
    """A declared CUHK subset of the named pairs above (12 train, 4 test), copied once per session."""
    from mdbd.data.subset import make_cuhk_subset
    from mdbd.core.paths import shared_data_root

    shared = shared_data_root()
    if shared is None or not (shared / "cuhk-full" / "gt").is_dir():
        pytest.skip("real CUHK images not available: set $MDBD_SHARED_DATA to a folder with cuhk-full/")
    return make_cuhk_subset(shared / "cuhk-full", tmp_path_factory.mktemp("cuhk") / "subset",
                            train=CUHK_TRAIN_IDS, test=CUHK_TEST_IDS)


@pytest.fixture(scope="session")
def tiny_multianet(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, synthetic data root) of a 2-epoch multianet run (attention_scale none) at 32 px on 6 synthetic
    images, one step per epoch: after step 2, alpha is non-zero. A few seconds."""
    import mdbd.core.paths
    from mdbd.runs.config import load_config
    from mdbd.runs.train import train

    data = tmp_path_factory.mktemp("tiny-multianet")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mdbd.core.paths, "DATA_DIR", data)
        cfg = load_config("smoke", preset="multianet", backbone_weights="none", attention_scale="none", image_size=32,
                          epochs=2,
                          batch_size=6, data_root=str(data / "synth"), run_dir=str(data / "run"),
                          **{"synth.train_images": 6, "synth.test_images": 2, "synth.image_size": 40})
        return train(cfg, progress=False).checkpoint, data / "synth"
