"""Run identity (mdbd.runs.identity) and the reuse rule of mdbd.runs.train: a finished run is reused only for the same
identity, an interrupted one resumed only for the same identity; anything else is a new folder or an error naming the
fields;
a fresh start moves the old run away first. Tiny in-process runs (32 px, 12 images, no backbone weights)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mdbd.runs.checkpoint import read_checkpoint
from mdbd.runs.config import load_config
from mdbd.core.errors import ConfigError
from mdbd.runs.identity import identity_hash, run_identity
from mdbd.chain.stages.training import train_or_resume
from mdbd.runs.train import train

pytestmark = pytest.mark.slow
# the HL preset on a frozen backbone: ~2 s a run on a busy 2-core machine (the rule does not depend on the model)
TINY = {"preset": "hl", "freeze_backbone_blocks": 5, "image_size": 32, "backbone_weights": "none", "epochs": 2,
        "batch_size": 6, "device": "cpu",
        "synth.train_images": 12, "synth.test_images": 4, "synth.image_size": 48}


@pytest.fixture(autouse=True)
def _private_dirs(monkeypatch, data_dir, tmp_path):
    """Default data and run folders inside the test's own folders (the synthetic set is made once per module)."""
    import mdbd.core.paths

    monkeypatch.setattr(mdbd.core.paths, "DATA_DIR", data_dir)
    monkeypatch.setattr(mdbd.core.paths, "RESULTS_DIR", tmp_path / "results")


def _cfg(**kw):
    return load_config("smoke", **{**TINY, **kw})


def test_a_finished_run_is_never_returned_for_another_epoch_count():
    long = train_or_resume(_cfg(epochs=2), progress=False)
    short = train_or_resume(_cfg(epochs=1), progress=False)
    assert short.run_dir != long.run_dir
    assert read_checkpoint(short.checkpoint)["epoch"] == 1 and len(short.log) == 1
    assert read_checkpoint(long.checkpoint)["epoch"] == 2
    assert yaml.safe_load((long.run_dir / "config.yaml").read_text())["epochs"] == 2  # not rewritten
    assert short.status == "trained" and short.describe().startswith("trained here: 1 epoch of hl")
    again = train_or_resume(_cfg(epochs=2), progress=False)
    assert again.status == "reused" and again.checkpoint == long.checkpoint and len(again.log) == 2
    assert again.describe().startswith("reused the finished run ") and "trained by mdbd " in again.describe()


def test_an_explicit_run_dir_of_another_run_is_refused_naming_every_field(tmp_path):
    run_dir = str(tmp_path / "run")
    train(_cfg(run_dir=run_dir, epochs=1), progress=False)
    with pytest.raises(ConfigError) as err:
        train(_cfg(run_dir=run_dir, epochs=2, lr=1e-3), resume=True, progress=False)
    message = str(err.value)
    assert "epochs: run 1, now 2" in message and "lr: run 0.0004, now 0.001" in message
    assert "2 field(s)" in message and "without --resume" in message
    # bookkeeping may differ: the same run is reused
    same = train(_cfg(run_dir=run_dir, epochs=1, val_every=5, checkpoint_every=3, num_workers=1), resume=True,
                 progress=False)
    assert same.status == "reused"


def test_two_folder_datasets_never_share_a_run(tmp_path, smoke_synthetic):
    roots = {name: Path(shutil.copytree(smoke_synthetic, tmp_path / name)) for name in ("a", "b")}
    for stem in ("train_00000", "train_00001"):  # b: another dataset (two training pairs fewer)
        (roots["b"] / "train" / "images" / f"{stem}.jpg").unlink()
        (roots["b"] / "train" / "masks" / f"{stem}.png").unlink()
    runs = {name: train_or_resume(_cfg(dataset="folder", data_root=str(root), epochs=1), progress=False)
            for name, root in roots.items()}
    assert runs["b"].checkpoint != runs["a"].checkpoint and runs["b"].status == "trained"
    assert read_checkpoint(runs["b"].checkpoint)["data_root"] == str(roots["b"])
    assert runs["a"].run_dir.name.startswith("hl-folder-a-seed0-")


def test_data_changed_in_place_is_refused_naming_the_fingerprint(tmp_path, smoke_synthetic):
    root = Path(shutil.copytree(smoke_synthetic, tmp_path / "data"))
    cfg = _cfg(dataset="folder", data_root=str(root), epochs=1)
    first = train_or_resume(cfg, progress=False)
    (root / "train" / "images" / "train_00003.jpg").unlink()
    (root / "train" / "masks" / "train_00003.png").unlink()
    with pytest.raises(ConfigError, match=r"data_fingerprint\.train: run '24 pairs, sha256 \w+', now '23 pairs"):
        train_or_resume(cfg, progress=False)
    fresh = train(cfg, progress=False)  # the way out the message names
    assert fresh.status == "trained" and (first.run_dir / "previous" / "last.pt").is_file()


def test_code_and_generator_versions_are_part_of_the_identity(monkeypatch, tmp_path):
    import mdbd.data.spec
    import mdbd.runs.identity

    cfg = _cfg(epochs=1, data_root=str(tmp_path / "synth"))
    first = train_or_resume(cfg, progress=False)
    version = mdbd.runs.identity.TRAINING_VERSION
    monkeypatch.setattr(mdbd.runs.identity, "TRAINING_VERSION", version + 1)
    assert cfg.resolved_run_dir() != first.run_dir
    with pytest.raises(ConfigError, match=rf"training_version: run {version}, now {version + 1}"):
        train(cfg.replace(run_dir=str(first.run_dir)), resume=True, progress=False)
    monkeypatch.undo()
    monkeypatch.setattr(mdbd.data.spec, "GENERATOR_VERSION", mdbd.data.spec.GENERATOR_VERSION + 1)
    assert cfg.resolved_run_dir() != first.run_dir
    assert run_identity(cfg)["generator_version"] == mdbd.data.spec.GENERATOR_VERSION


def test_a_fresh_start_moves_the_old_run_away_before_a_crash_can_leave_it_to_resume(monkeypatch, tmp_path):
    import mdbd.runs.train

    run_dir = str(tmp_path / "run")
    train(_cfg(run_dir=run_dir, epochs=1), progress=False)

    def crash(epoch, step):
        raise RuntimeError("simulated crash before the new run's first checkpoint")

    monkeypatch.setattr(mdbd.runs.train, "_maybe_kill", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_cfg(run_dir=run_dir, epochs=2), progress=False)  # a fresh start of another run in that folder
    monkeypatch.undo()
    assert not (tmp_path / "run" / "last.pt").exists()
    assert read_checkpoint(tmp_path / "run" / "previous" / "last.pt")["epoch"] == 1
    resumed = train(_cfg(run_dir=run_dir, epochs=2), resume=True, progress=False)
    assert resumed.status == "trained" and resumed.resumed_after == 0 and len(resumed.log) == 2


def test_bookkeeping_leaves_the_identity_alone_and_the_device_type_does_not():
    base = _cfg()
    same = [base.replace(**{k: v}) for k, v in (("num_workers", 3), ("val_every", 7), ("checkpoint_every", 9),
                                                  ("ablation.seeds", [4, 5]), ("bf16", False))]
    assert {identity_hash(run_identity(c)) for c in same} == {identity_hash(run_identity(base))}
    cuda = run_identity(base.replace(device="cuda"))  # names the device only: nothing runs on it
    assert cuda["device_type"] == "cuda" and cuda["bf16"] is True
    assert identity_hash(cuda) != identity_hash(run_identity(base))
    assert identity_hash(run_identity(base.replace(device="cuda", bf16=False))) != identity_hash(cuda)
    for field, value in (("epochs", 3), ("lr", 1e-3), ("seed", 1), ("preset", "multianet"), ("augment", False),
                         ("synth.train_images", 13)):
        assert base.replace(**{field: value}).resolved_run_dir() != base.resolved_run_dir(), field


def test_the_shared_data_folder_is_named_alike_with_and_without_the_variable(monkeypatch, tmp_path):
    """`make` sets $MDBD_SHARED_DATA, a bare `mdbd` command may not: with the folder at its default place both name
    the data folder "$MDBD_SHARED_DATA/cuhk-full", so both get one run folder (they once got two)."""
    import mdbd.core.paths
    from mdbd.core.paths import display_path, shared_data_root

    shared = tmp_path / "shared" / "data"
    (shared / "cuhk-full").mkdir(parents=True)
    monkeypatch.setattr(mdbd.core.paths, "DEFAULT_SHARED_DATA", shared)
    cfg = _cfg(dataset="cuhk", data_root=str(shared / "cuhk-full"))
    monkeypatch.setenv("MDBD_SHARED_DATA", str(shared))
    with_variable = run_identity(cfg)
    monkeypatch.delenv("MDBD_SHARED_DATA")
    assert shared_data_root() == shared.resolve()
    assert display_path(shared / "cuhk-full") == "$MDBD_SHARED_DATA/cuhk-full"
    assert run_identity(cfg) == with_variable and with_variable["data"] == "$MDBD_SHARED_DATA/cuhk-full"
    # set but empty: explicitly none (the nbval state), even with the default folder present
    monkeypatch.setenv("MDBD_SHARED_DATA", "")
    assert shared_data_root() is None and display_path(shared / "cuhk-full") == str((shared / "cuhk-full").resolve())
    # unset and no cuhk-full/ at the default place: none
    monkeypatch.delenv("MDBD_SHARED_DATA")
    (shared / "cuhk-full").rmdir()
    assert shared_data_root() is None
