"""mdbd.evaluation.evaluate and `mdbd evaluate`: tidy tables, provenance, folder pairing, bad input, atomic writing."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mdbd.core.errors import ConfigError, DataError
from mdbd.evaluation.evaluate import (CURVE_COLUMNS, TABLE_COLUMNS, curves_path, evaluate_folders, evaluate_maps,
                           resolve_gt_polarity, write_results)
from mdbd.metrics import SODFmeasure

PROVENANCE = ("weights", "profile", "device", "seed", "code_version")


def _maps(n=6, size=16, seed=0):
    rng = np.random.default_rng(seed)
    gts = [(rng.random((size, size)) > 0.5).astype(np.uint8) for _ in range(n)]
    preds = [np.clip(0.5 * g + 0.6 * rng.random(g.shape), 0, 1) for g in gts]
    return preds, gts


def _write_folder(root: Path, preds, gts, gt_ext=".png", invert_gt=False, stems=None):
    (root / "pred").mkdir(parents=True)
    (root / "gt").mkdir()
    stems = stems or [str(i + 1) for i in range(len(preds))]
    for stem, pred, gt in zip(stems, preds, gts):
        Image.fromarray((pred * 255).astype(np.uint8)).save(root / "pred" / f"{stem}.png")
        mask = (1 - gt if invert_gt else gt).astype(np.uint8) * 255
        Image.fromarray(mask).save(root / "gt" / f"{stem}{gt_ext}")
    return root / "pred", root / "gt"


# -- evaluate_maps --------------------------------------------------------------------------------

def test_table_and_curves_are_tidy_with_provenance():
    preds, gts = _maps()
    result = evaluate_maps(preds, gts, ids=[f"im{i}" for i in range(6)], bootstrap=50, seed=3, model="m",
                           dataset="cuhk", split="test", weights="imagenet", profile="smoke", device="cpu")
    table = result.table
    assert list(table.columns[:len(TABLE_COLUMNS)]) == list(TABLE_COLUMNS)
    for column in PROVENANCE + ("torch_version", "n_boot"):
        assert column in table.columns
    assert set(table["protocol"]) == {"sod", "adaptive1.5", "fixed0.5", "zhao", "ddffnet", "sod-blur"}
    assert len(table) == 5 + 3 + 3 + 2 + 4 + 5
    # D-DFFNet's protocol and sod-blur are scored blur-positive whatever is asked, and their rows say so
    fixed = table["protocol"].isin(["ddffnet", "sod-blur"])
    assert set(table.loc[fixed, "positive"]) == {"blur"} and set(table.loc[~fixed, "positive"]) == {"infocus"}
    blur = evaluate_maps(preds, gts, protocols=["sod"], positive="blur", bootstrap=0).table.set_index("metric")
    assert table.query("protocol == 'sod-blur'").set_index("metric")["value"].to_dict() == blur["value"].to_dict()
    row = table.iloc[0]
    assert (row["model"], row["dataset"], row["split"], row["weights"], row["profile"], row["device"],
            row["seed"], row["n_images"], row["positive"]) == ("m", "cuhk", "test", "imagenet", "smoke", "cpu", 3,
                                                               6, "infocus")
    assert row["code_version"].startswith("0.")
    assert (table["ci_low"] <= table["value"] + 1e-12).all() and (table["value"] <= table["ci_high"] + 1e-12).all()
    curves = result.curves
    assert list(curves.columns[:len(CURVE_COLUMNS)]) == list(CURVE_COLUMNS)
    assert curves.groupby("protocol").size().to_dict() == {"sod": 256, "zhao": 21, "sod-blur": 256}
    # the table's sod max_f is the max of the sod F-curve
    sod_curve = curves[curves["protocol"] == "sod"]
    max_f = table.query("protocol == 'sod' and metric == 'max_f'")["value"].item()
    assert max_f == pytest.approx(sod_curve["fmeasure"].max())
    assert set(result.per_image["id"]) == {f"im{i}" for i in range(6)}


def test_values_match_the_metric_classes_and_polarity_is_recorded():
    preds, gts = _maps()
    direct = SODFmeasure(positive="blur")
    for p, g in zip(preds, gts):
        direct.step(p, g)
    result = evaluate_maps(preds, gts, protocols=["sod"], positive="blur", bootstrap=0)
    table = result.table.set_index("metric")
    assert table.loc["max_f", "value"] == pytest.approx(direct.get_results()["max_f"], abs=1e-12)
    assert set(result.table["positive"]) == {"blur"}
    assert result.table["ci_low"].isna().all()  # no bootstrap asked


def test_evaluate_maps_refuses_bad_input_naming_the_image():
    preds, gts = _maps(3)
    with pytest.raises(DataError, match="more ground truths"):
        evaluate_maps(preds[:2], gts, bootstrap=0)
    bad = [preds[0], np.full_like(preds[1], np.nan), preds[2]]
    with pytest.raises(DataError, match=r"image 'b': the prediction contains"):
        evaluate_maps(bad, gts, ids=["a", "b", "c"], bootstrap=0)
    with pytest.raises(DataError, match="no prediction"):
        evaluate_maps([], [], bootstrap=0)
    with pytest.raises(ValueError, match="protocols"):
        evaluate_maps(preds, gts, protocols=["bogus"], bootstrap=0)


# -- evaluate_folders -----------------------------------------------------------------------------

def test_folders_pair_by_stem_and_gt_polarity_inverts(tmp_path):
    preds, gts = _maps(5)
    pred_dir, gt_dir = _write_folder(tmp_path / "a", preds, gts, gt_ext=".bmp")
    blur_pred_dir, blur_gt_dir = _write_folder(tmp_path / "b", preds, gts, invert_gt=True)
    a = evaluate_folders(pred_dir, gt_dir, gt_polarity="infocus_white", bootstrap=0, protocols=["sod", "fixed0.5"])
    b = evaluate_folders(blur_pred_dir, blur_gt_dir, gt_polarity="blur_white", bootstrap=0,
                         protocols=["sod", "fixed0.5"])
    np.testing.assert_allclose(a.table["value"], b.table["value"])
    assert a.table["n_images"].iloc[0] == 5
    assert sorted(a.per_image["id"].unique()) == ["1", "2", "3", "4", "5"]


def test_mismatched_folders_list_missing_stems(tmp_path):
    preds, gts = _maps(4)
    pred_dir, gt_dir = _write_folder(tmp_path, preds, gts)
    (gt_dir / "3.png").unlink()
    (pred_dir / "1.png").rename(pred_dir / "extra.png")
    with pytest.raises(DataError, match=r"2 prediction\(s\) without ground truth .*: 3, extra; 1 ground truth\(s\) "
                                        r"without prediction .*: 1"):
        evaluate_folders(pred_dir, gt_dir, gt_polarity="infocus_white", bootstrap=0)


def test_different_sizes_name_the_file_and_resize_fixes_it(tmp_path):
    preds, gts = _maps(3)
    pred_dir, gt_dir = _write_folder(tmp_path, preds, gts)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(pred_dir / "2.png")
    with pytest.raises(DataError, match=r"2\.png: prediction is 8x8 but its ground truth 2\.png is 16x16; "
                                        r"pass --resize"):
        evaluate_folders(pred_dir, gt_dir, gt_polarity="infocus_white", bootstrap=0)
    resized = evaluate_folders(pred_dir, gt_dir, gt_polarity="infocus_white", bootstrap=0, resize=True)
    assert resized.table["n_images"].iloc[0] == 3
    zhao = evaluate_folders(pred_dir, gt_dir, gt_polarity="infocus_white", bootstrap=0, protocols=["zhao"])
    assert zhao.table["n_images"].iloc[0] == 3


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    with pytest.raises(DataError, match=r"prediction folder .*pred is empty"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    with pytest.raises(DataError, match="does not exist"):
        evaluate_folders(tmp_path / "nope", tmp_path / "gt")


def test_unreadable_and_non_binary_files_are_named(tmp_path):
    preds, gts = _maps(3)
    pred_dir, gt_dir = _write_folder(tmp_path, preds, gts)
    (pred_dir / "2.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*pred/2\.png"):
        evaluate_folders(pred_dir, gt_dir, gt_polarity="infocus_white", bootstrap=0)
    Image.fromarray((preds[1] * 255).astype(np.uint8)).save(pred_dir / "2.png")
    graded = np.array(Image.open(gt_dir / "3.png"))
    graded[0, :4] = 100
    Image.fromarray(graded).save(gt_dir / "3.png")
    with pytest.raises(DataError, match=r"image '3': ground truth is not binary: 4 pixel"):
        evaluate_folders(pred_dir, gt_dir, gt_polarity="infocus_white", bootstrap=0)
    lenient = evaluate_folders(pred_dir, gt_dir, gt_polarity="infocus_white", bootstrap=0, strict_gt=False)
    assert lenient.table["n_images"].iloc[0] == 3


def test_real_dut_samples_need_binarize(shared_data, tmp_path):
    gt_dir = shared_data / "dut-samples" / "dut500-gt"
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    for path in sorted(gt_dir.glob("*.bmp")):
        Image.open(path).convert("L").save(pred_dir / f"{path.stem}.png")  # the GT itself as prediction
    with pytest.raises(DataError, match="ground truth is not binary"):
        evaluate_folders(pred_dir, gt_dir, bootstrap=0)  # polarity: recognised from the folder name dut500-gt
    result = evaluate_folders(pred_dir, gt_dir, bootstrap=0, strict_gt=False, protocols=["sod", "zhao"])
    assert set(result.table["gt_polarity"]) == {"infocus_white"}
    values = result.table.set_index(["protocol", "metric"])["value"]
    assert values[("sod", "max_f")] > 0.97 and values[("sod", "mae")] < 0.03
    assert result.table["n_images"].iloc[0] == 5


# -- writing --------------------------------------------------------------------------------------

def test_write_results_writes_both_csvs(tmp_path):
    preds, gts = _maps()
    result = evaluate_maps(preds, gts, bootstrap=20, model="m", dataset="d", split="s")
    out = tmp_path / "sub" / "eval.csv"
    written = write_results(result, out)
    assert written == [out, tmp_path / "sub" / "eval_curves.csv"] and curves_path(out) == written[1]
    table = pd.read_csv(out)
    for column in TABLE_COLUMNS + PROVENANCE:
        assert column in table.columns
    assert len(table) == len(result.table)
    assert list(pd.read_csv(written[1]).columns[:len(CURVE_COLUMNS)]) == list(CURVE_COLUMNS)
    assert sorted(p.name for p in out.parent.iterdir()) == ["eval.csv", "eval_curves.csv"]


def test_write_results_is_atomic(tmp_path, monkeypatch):
    preds, gts = _maps()
    result = evaluate_maps(preds, gts, bootstrap=0)
    out = tmp_path / "eval.csv"
    out.write_text("previous\n")
    real_to_csv = pd.DataFrame.to_csv
    calls = []

    def failing_to_csv(self, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the curves file: write half of it, then fail
            Path(path).write_text("model,dat")
            raise OSError("disk full")
        return real_to_csv(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", failing_to_csv)
    with pytest.raises(DataError, match=r"writing .*eval\.csv failed \(disk full\); the previous files are "
                                        "unchanged"):
        write_results(result, out)
    assert out.read_text() == "previous\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.csv"]  # no curves, no temporaries


def test_a_failed_second_rename_leaves_the_previous_set(tmp_path, monkeypatch):
    """Issue 25 item 9: the renames used to go one by one (a new table beside old curves after a failure)."""
    import os

    result = evaluate_maps(*_maps(), bootstrap=0)
    out = tmp_path / "eval.csv"
    out.write_text("previous table\n")
    curves_path(out).write_text("previous curves\n")
    real_replace, placed = os.replace, []

    def failing_replace(src, dst):
        if str(src).endswith(".tmp"):
            placed.append(dst)
            if len(placed) == 2:
                raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(DataError, match="Input/output error"):
        write_results(result, out)
    assert out.read_text() == "previous table\n" and curves_path(out).read_text() == "previous curves\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.csv", "eval_curves.csv"]


def test_results_are_world_readable_and_previous_files_replaced(tmp_path):
    result = evaluate_maps(*_maps(), bootstrap=0)
    out = tmp_path / "eval.csv"
    out.write_text("previous\n")
    for path in write_results(result, out, per_image=True):
        assert path.stat().st_mode & 0o777 == 0o644, path
    assert out.read_text() != "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.csv", "eval_curves.csv", "eval_per_image.csv"]


@pytest.mark.parametrize("case", ["folder", "under_a_file", "curves_name_is_a_folder"])
def test_a_bad_out_is_refused_before_scoring(case, tmp_path, monkeypatch, capsys):
    import mdbd.evaluation.evaluate
    from mdbd.cli import main

    pred_dir, gt_dir = _write_folder(tmp_path, *_maps(3))
    (tmp_path / "afile").write_text("x")
    out = {"folder": tmp_path / "pred", "under_a_file": tmp_path / "afile" / "eval.csv",
           "curves_name_is_a_folder": tmp_path / "e.csv"}[case]
    if case == "curves_name_is_a_folder":
        (tmp_path / "e_curves.csv").mkdir()
    monkeypatch.setattr(mdbd.evaluation.evaluate, "evaluate_folders", lambda *a, **k: pytest.fail("scored"))
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--gt-polarity", "infocus_white",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mdbd evaluate: error: output" in err, err
    assert ("is a folder" if case != "under_a_file" else "lies under a file") in err


# -- command line ---------------------------------------------------------------------------------

def _cli(argv):
    from mdbd.commands import evaluate

    parser = argparse.ArgumentParser(prog="mdbd")
    evaluate.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_table_and_prints_summary(tmp_path, capsys):
    preds, gts = _maps(4)
    pred_dir, gt_dir = _write_folder(tmp_path, preds, gts, invert_gt=True)
    out = tmp_path / "out" / "eval.csv"
    status = _cli(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--gt-polarity", "blur_white",
                   "--protocol", "sod", "zhao", "--positive", "blur", "--model", "unet", "--dataset", "cuhk",
                   "--split", "test", "--bootstrap", "30", "--out", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "max_f" in printed and "95% CI" in printed and "eval_curves.csv" in printed
    table = pd.read_csv(out)
    assert set(table["protocol"]) == {"sod", "zhao"} and set(table["positive"]) == {"blur"}
    assert set(table["model"]) == {"unet"} and set(table["gt_polarity"]) == {"blur_white"}


def test_cli_errors_are_data_errors(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    with pytest.raises(DataError, match="is empty"):
        _cli(["evaluate", "--pred", str(tmp_path / "p"), "--gt", str(tmp_path / "g"), "--out", str(tmp_path / "x.csv")])
    assert not (tmp_path / "x.csv").exists()


# -- GT polarity: never a silent default ----------------------------------------------------------

def _shi_folder(root: Path, n=4):
    """Predictions and Shi-style GT files (out_of_focusNNNN.png, white = BLURRED)."""
    preds, gts = _maps(n)
    return (*_write_folder(root, preds, gts, invert_gt=True, stems=[f"out_of_focus{605 + i:04d}" for i in range(n)]),
            preds, gts)


def test_shi_named_gt_is_read_as_white_blurred_by_default(tmp_path, capsys):
    pred_dir, gt_dir, preds, gts = _shi_folder(tmp_path)
    out = tmp_path / "eval.csv"
    assert _cli(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--bootstrap", "0", "--out", str(out)]) == 0
    assert "blur_white (recognised as Shi's CUHK masks" in capsys.readouterr().out
    written = [np.asarray(Image.open(p)) for p in sorted(pred_dir.iterdir())]  # the 8-bit maps as scored
    want = evaluate_maps(written, gts, protocols=["sod"], bootstrap=0).table["value"].to_numpy()
    got = pd.read_csv(out)
    np.testing.assert_allclose(got["value"].to_numpy(), want, atol=1e-12)  # not the flipped GT's numbers
    assert set(got["gt_polarity"]) == {"blur_white"} and got["gt_polarity_from"].str.contains("Shi").all()


def test_dataset_sets_the_polarity_and_a_bare_folder_without_one_is_refused(tmp_path, capsys):
    preds, gts = _maps(3)
    pred_dir, gt_dir = _write_folder(tmp_path / "cuhk", preds, gts, invert_gt=True)  # names 1, 2, 3: not Shi's
    out = tmp_path / "eval.csv"
    args = ["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--bootstrap", "0", "--out", str(out)]
    with pytest.raises(ConfigError, match=r"polarity of the ground truth in .*gt is not known: .*--gt-polarity "
                                          r"infocus_white\|blur_white, or --dataset cuhk\|dut"):
        _cli(args)
    assert not out.exists()
    assert _cli(args + ["--dataset", "cuhk"]) == 0
    assert "blur_white (the cuhk convention" in capsys.readouterr().out
    written = [np.asarray(Image.open(pred_dir / f"{i}.png")) for i in (1, 2, 3)]
    want = evaluate_maps(written, gts, protocols=["sod"], bootstrap=0).table["value"].to_numpy()
    np.testing.assert_allclose(pd.read_csv(out)["value"].to_numpy(), want, atol=1e-12)
    assert resolve_gt_polarity(gt_dir, dataset="dut") == ("infocus_white", "the dut convention (dataset=dut)")
    polarity, origin = resolve_gt_polarity(gt_dir, "infocus_white", dataset="cuhk")  # declared wins, with a note
    assert polarity == "infocus_white" and "cuhk's files as distributed are blur_white" in origin
    with pytest.raises(ConfigError, match="not known"):
        evaluate_folders(pred_dir, gt_dir, bootstrap=0)


def test_cli_metrics_all_prints_the_structure_metrics_under_the_sod_protocols_only(tmp_path, capsys):
    preds, gts = _maps(4)
    pred_dir, gt_dir = _write_folder(tmp_path, preds, gts)
    out = tmp_path / "eval.csv"
    assert _cli(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--gt-polarity", "infocus_white",
                 "--protocol", "sod", "sod-blur", "fixed0.5", "--metrics", "all", "--bootstrap", "20",
                 "--per-image", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("sm", "max_em", "mean_em", "adaptive_em", "wfm"):
        assert f" {name} " in printed, name
    table = pd.read_csv(out)
    extra = table[table["metric"].isin(["sm", "max_em", "mean_em", "adaptive_em", "wfm"])]
    assert sorted(set(extra["protocol"])) == ["sod", "sod-blur"]  # not under fixed0.5: they do not apply there
    assert extra["ci_low"].notna().all() and (extra["ci_low"] <= extra["value"] + 1e-12).all()
    # the foreground: in focus under sod, blur under sod-blur, as the positive column says
    assert dict(extra.groupby("protocol")["positive"].first()) == {"sod": "infocus", "sod-blur": "blur"}
    per_image = pd.read_csv(tmp_path / "eval_per_image.csv")
    assert {"sm", "adaptive_em", "wfm"} <= set(per_image["metric"])
    # without --metrics all (the default), the table keeps its rows
    assert _cli(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--gt-polarity", "infocus_white",
                 "--protocol", "sod", "--bootstrap", "0", "--out", str(tmp_path / "plain.csv")]) == 0
    assert list(pd.read_csv(tmp_path / "plain.csv")["metric"]) == ["max_f", "mean_f", "adaptive_f", "max_f_pr", "mae"]


def test_evaluate_maps_extended_equals_the_metric_classes():
    from mdbd.metrics import Smeasure, WeightedFmeasure

    preds, gts = _maps(5)
    result = evaluate_maps(preds, gts, protocols=["sod-blur"], bootstrap=0, extended=True)
    value = dict(zip(result.table["metric"], result.table["value"]))
    sm, wfm = Smeasure(positive="blur"), WeightedFmeasure(positive="blur")
    for pred, gt in zip(preds, gts):
        sm.step(pred, gt)
        wfm.step(pred, gt)
    assert value["sm"] == pytest.approx(sm.get_results()["sm"], abs=1e-12)
    assert value["wfm"] == pytest.approx(wfm.get_results()["wfm"], abs=1e-12)
