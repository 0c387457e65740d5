"""mdbd.evaluation.audit (which protocol reproduces a paper's numbers) and the 04 comparison stage: Table I's
provenance, the CUHK-TE-1 table, "not available" off Shi's data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mdbd.evaluation.audit import (F_VARIANTS, MAE_READINGS, MAE_VARIANTS, SIZES, AuditMethod, Candidate,
audit_protocols,
                        audit_table, candidates, mae_readings_table)
from mdbd.runs.config import load_config
from mdbd.metrics import POSITIVE_CLASSES
from mdbd.evaluation.report import DDFFNET_QUOTED, QUOTED
from mdbd.chain.stages import comparison, cuhk_te1
from mdbd.chain.stages.common import HEADLINE

# Two 2x2 images (1 = in focus). A: the top row is in focus and the map ranks it first. C: one pixel in focus, the
# map says everything is: protocol 3 (blur positive) finds no blur at all, D-DFFNet's all-positive quirk rescues it.
GT_A, PRED_A = np.array([[1, 1], [0, 0]], np.uint8), np.array([[0.9, 0.6], [0.4, 0.1]])
GT_C, PRED_C = np.array([[1, 0], [0, 0]], np.uint8), np.ones((2, 2))
F_ALL_BLUR_C = 1.3 * 0.75 / (0.3 * 0.75 + 1)  # the all-blur map on C: P 3/4, R 1
HAND = {  # (protocol, F variant, positive) at the GT's size -> F by hand
    ("fixed0.5", "f", "infocus"): (1 + 1.3 * 0.25 / (0.3 * 0.25 + 1)) / 2,  # C: P 1/4, R 1
    ("fixed0.5", "f_pooled", "infocus"): 1.3 * 0.5 / (0.3 * 0.5 + 1),  # TP 3, predicted 6, positives 3
    ("fixed0.5", "f", "blur"): (1 + 0) / 2,
    ("ddffnet", "f", "blur"): (1 + F_ALL_BLUR_C) / 2,
    ("ddffnet", "f", "infocus"): (1 + 1.3 * 0.25 / (0.3 * 0.25 + 1)) / 2,  # in focus: the binary map is all-positive
    ("zhao", "max_f", "infocus"): (1 + 1.3 * 0.25 / (0.3 * 0.25 + 1)) / 2,  # C's only threshold keeps all pixels
}
MAE_RAW = (0.25 + 0.75) / 2
MAE_MINMAX = (0.75 / 4 + 0.75) / 2  # A min-max normalised to [1, .625, .375, 0]; C constant, left as is


def _audit(quoted, maps=((PRED_A, PRED_C),), names=("M",), gts=(GT_A, GT_C)):
    methods = [AuditMethod(name, "re-implemented", list(m)) for name, m in zip(names, maps)]
    return audit_protocols(methods, list(gts), quoted)


def test_every_candidate_is_scored_with_the_known_answers_of_hand_made_maps():
    result = _audit({"M": (0.5, 0.5)})
    scores = result.scores.set_index(["protocol", "f_metric", "mae", "positive", "size"])
    assert len(result.scores) == len(candidates()) == sum(len(v) for v in F_VARIANTS.values()) * len(MAE_VARIANTS) \
        * len(POSITIVE_CLASSES) * len(SIZES)
    for (protocol, f_metric, positive), expected in HAND.items():
        assert scores.loc[(protocol, f_metric, "raw", positive, "gt"), "fbeta"] == pytest.approx(expected, abs=1e-12), \
            (protocol, f_metric, positive)
    assert scores.loc[("sod", "max_f", "raw", "infocus", "gt"), "mae_value"] == pytest.approx(MAE_RAW, abs=1e-12)
    assert scores.loc[("sod", "max_f", "normalised", "blur", "gt"), "mae_value"] == pytest.approx(MAE_MINMAX, abs=1e-12)
    # at 320x320 the GT is resized by nearest neighbour (same fractions, still binary) and a constant map stays
    # constant: C scores as at its own size
    only_c = audit_protocols([AuditMethod("M", "x", [PRED_C])], [GT_C], {"M": (0.5, 0.5)}).scores
    only_c = only_c.set_index(["protocol", "f_metric", "mae", "positive", "size"])
    assert only_c.loc[("ddffnet", "f", "raw", "blur", "320"), "fbeta"] == pytest.approx(F_ALL_BLUR_C, abs=1e-12)
    assert only_c.loc[("fixed0.5", "f", "raw", "infocus", "320"), "fbeta"] == pytest.approx(0.325 / 1.075, abs=1e-12)
    assert only_c.loc[("sod", "max_f", "raw", "blur", "320"), "mae_value"] == pytest.approx(0.75, abs=1e-12)


def test_mae_readings_beyond_the_candidates_have_the_known_answers_of_hand_made_maps():
    """Issue 26 item 5: MAE read as a paper's code might have (binarised, pooled, 8-bit), by hand on A and C."""
    result = _audit({"M": (0.5, 0.375)})
    got = result.mae_readings.set_index(["reading", "pooling"])["mae_value"]
    assert set(got.index.get_level_values(0)) == set(MAE_READINGS)
    expected = {  # per image (A, C) -> mean; A and C have 4 pixels each, so pooled equals per image here
        "raw map": (0.25 + 0.75) / 2,
        "min-max normalised (protocol sod)": MAE_MINMAX,
        # blur = 1 - [1, .625, .375, 0] >= 0.5 marks A's bottom row: exact; C's constant map stays 1: no blur at all
        "min-max, binarised: blur where >= 0.5": (0 + 0.75) / 2,
        # A's blur mean is 0.5, so only its blurriest pixel (blur 1) passes 2 x mean; C's blur map is 0: all blur
        "min-max, binarised: blur where >= 2 x its mean": (0.25 + 0.25) / 2,
    }
    for reading, value in expected.items():
        for pooling in ("per image", "pooled pixels"):
            assert got[(reading, pooling)] == pytest.approx(value, abs=1e-12), (reading, pooling)
    table = mae_readings_table(result)
    assert table.iloc[0]["reading"] == "min-max, binarised: blur where >= 0.5" and table.iloc[0]["distance"] < 1e-12
    assert bool(table.iloc[0]["within_tolerance"]) and not table.iloc[-1]["within_tolerance"]


def test_pooled_mae_weighs_images_by_their_pixels():
    big, small = np.zeros((4, 4), np.uint8), np.zeros((2, 2), np.uint8)
    result = _audit({"M": (0.5, 0.5)}, maps=((np.full((4, 4), 0.5), np.full((2, 2), 0.1)),), gts=(big, small))
    got = result.mae_readings.set_index(["reading", "pooling"])["mae_value"]
    assert got[("raw map", "per image")] == pytest.approx((0.5 + 0.1) / 2)
    assert got[("raw map", "pooled pixels")] == pytest.approx((16 * 0.5 + 4 * 0.1) / 20)


def test_the_ranking_finds_the_protocol_that_produced_the_quoted_numbers():
    # D: the top row in focus, the map calls everything blur, the bottom right blurriest; Zhao's per-image oracle
    # threshold isolates that pixel (F 0.8125), D-DFFNet's 0.5 keeps them all (F of the all-blur map)
    gt_d, pred_d = np.array([[1, 1], [0, 0]], np.uint8), np.array([[0.3, 0.3], [0.3, 0.1]])
    f_all_blur_d = 1.3 * 0.5 / (0.3 * 0.5 + 1)
    quoted = {"M": ((1 + F_ALL_BLUR_C + f_all_blur_d) / 3, (0.25 + 0.75 + 0.45) / 3)}  # D-DFFNet's code on M
    result = _audit(quoted, maps=((PRED_A, PRED_C, pred_d),), gts=(GT_A, GT_C, gt_d))
    assert result.best == Candidate("ddffnet", "f", "raw", "blur", "gt")
    assert result.ranking.iloc[0]["distance"] == pytest.approx(0, abs=1e-12)
    assert result.ranking.iloc[1]["distance"] > 1e-3  # and it is the only one
    assert len(result.ranking) == len(candidates()) and result.ranking["candidate"].is_unique
    assert result.ranking["distance"].is_monotonic_increasing
    # the distance is the mean |difference| over every method's F and MAE
    row = result.ranking.iloc[5]
    mine = result.scores[result.scores["candidate"] == row["candidate"]]
    differences = np.r_[mine["fbeta_difference"].abs(), mine["mae_difference"].abs()]
    assert row["distance"] == pytest.approx(np.mean(differences))
    assert "It matches the paper's numbers within 0.01" in result.verdict
    assert pd.isna(row["distance_published_maps"])  # no published maps among the methods


def test_the_verdict_says_plainly_when_no_candidate_matches():
    result = _audit({"M": (0.05, 0.99)})
    assert "No candidate matches all quoted numbers within 0.01" in result.verdict
    table = audit_table(result)
    assert table["distance_definition"].iloc[0] == "mean over M of |F - F_quoted| and |MAE - MAE_quoted|"


def test_the_audit_refuses_methods_without_quoted_numbers_and_maps_that_do_not_fit():
    with pytest.raises(ValueError, match=r"no quoted numbers for \['M'\]"):
        _audit({"X": (0.5, 0.5)})
    with pytest.raises(Exception, match="has 1 maps for 2 ground truths"):
        audit_protocols([AuditMethod("M", "x", [PRED_A])], [GT_A, GT_C], {"M": (0.5, 0.5)})
    with pytest.raises(Exception, match="more maps than the 2 ground truths"):
        audit_protocols([AuditMethod("M", "x", [PRED_A, PRED_C, PRED_A])], [GT_A, GT_C], {"M": (0.5, 0.5)})


# real DBDF maps: a FIXED subset of five of the paper's test images (the paper's numbers are over all 100, so the
# distances here only need to be computed, not small)
DBDF_IDS = ["out_of_focus0605", "out_of_focus0623", "out_of_focus0650", "out_of_focus0677", "out_of_focus0704"]


def test_the_audit_on_real_dbdf_maps_has_one_row_per_candidate_with_its_distance(shared_data):
    from mdbd.data import open_dataset
    from mdbd.evaluation.published import open_known

    test = open_dataset("cuhk", shared_data / "cuhk-full", "test")
    ds = test.subset([test.ids.index(image_id) for image_id in DBDF_IDS])
    gts = [ds.load_mask(i) for i in range(len(ds))]
    maps = open_known("dbdf", ds.ids)
    dbdf = AuditMethod("DBDF", "published maps", (maps.load(i, g.shape) for i, g in enumerate(gts)))
    result = audit_protocols([dbdf], gts, {"DBDF": (0.841, 0.323)})
    assert len(result.ranking) == len(candidates()) and result.ranking["candidate"].is_unique
    assert result.ranking["distance"].between(0, 1).all()
    assert np.allclose(result.ranking["distance"], result.ranking["distance_published_maps"])
    assert set(result.scores["n_images"]) == {5} and set(result.scores["source"]) == {"published maps"}
    assert "On the published maps alone (DBDF; no re-implementation in between)" in result.verdict
    # where the rest of the distance lies, without blaming our code: HiFST's own published maps score as ours do
    assert "re-implemented methods' rows (their code, or the paper's own runs of them" in result.verdict
    assert "comes from the re-implementations" not in result.verdict
    # MAE does not depend on the positive class; F does (blur is ~2/3 of CUHK's pixels)
    s = result.scores.set_index(["protocol", "f_metric", "mae", "positive", "size"])
    assert s.loc[("sod", "max_f", "raw", "blur", "gt"), "mae_value"] == s.loc[("sod", "max_f", "raw", "infocus", "gt"),
                                                                              "mae_value"]
    assert s.loc[("sod", "max_f", "raw", "blur", "gt"), "fbeta"] != s.loc[("sod", "max_f", "raw", "infocus", "gt"),
                                                                          "fbeta"]


# -- the 04 stage ------------------------------------------------------------------------------------------

def _comparison_rows(dataset="cuhk"):
    rows = []
    protocol = HEADLINE["fbeta"][0]
    for model, source, f, mae in (("MultiANet (ours)", "trained here", 0.9, 0.1), ("HiFST", "re-implemented", 0.8, 0.2),
                                  ("LBP", "re-implemented", 0.82, 0.22), ("DBDF", "published maps", 0.84, 0.32),
                                  ("Laplacian energy", "implemented here", 0.7, 0.3)):
        for metric, value in (("max_f", f), ("mae", mae)):
            rows.append({"model": model, "source": source, "protocol": protocol, "positive": "blur", "metric": metric,
                         "value": value, "ci_low": value - 0.01, "ci_high": value + 0.01, "dataset": dataset,
                         "split": "test", "profile": "smoke", "device": "cpu", "seed": 0, "weights": "x",
                         "n_images": 100})
    return pd.DataFrame(rows)


def test_table_one_rows_carry_their_provenance_and_differences_on_shis_data():
    table = comparison.table_one(_comparison_rows(), load_config("smoke", dataset="cuhk"))
    source = table.drop_duplicates("method").set_index("method")["source"].to_dict()
    assert source["MultiANet (ours)"] == "trained here" and source["HiFST"] == source["LBP"] == "re-implemented"
    assert source["DBDF"] == "published maps" and source["Laplacian energy"].startswith("implemented here")
    quoted = {m: s for m, s in source.items() if "quoted only" in m}
    assert {m.split(" ")[0] for m in quoted} == {"ASVB", "SS", "BTBNet", "DeFusionNet", "BR2Net"}
    assert set(quoted.values()) == {"quoted"}
    dbdf = table[(table["method"] == "DBDF") & (table["metric"] == "fbeta")].iloc[0]
    assert dbdf[f"{QUOTED}: cuhk"] == 0.841 and dbdf["difference vs cuhk"] == pytest.approx(0.84 - 0.841)
    assert pd.isna(dbdf["difference vs dut"])
    assert len(table) == 2 * 10


def test_table_one_keeps_dbdf_quoted_with_the_reason_when_its_maps_are_absent():
    rows = _comparison_rows("synthetic")
    rows = rows[rows["model"] != "DBDF"]
    reason = "not available: DBDF's authors published maps for cuhk only"
    table = comparison.table_one(rows, load_config("smoke"), unavailable={"DBDF": reason})
    dbdf = table[table["method"].str.startswith("DBDF")]
    assert set(dbdf["source"]) == {"quoted"} and set(dbdf["note"]) == {reason} and dbdf["value"].isna().all()
    assert table.loc[table["measured_here"], "difference vs cuhk"].isna().all()  # synthetic: never a difference


def test_off_shis_data_the_audit_and_cuhk_te1_say_not_available():
    cfg = load_config("smoke")
    audit = comparison.protocol_audit(cfg)
    assert not audit.available and audit.notes[0].startswith("not available")
    zhao = cuhk_te1.zhao_test_comparison(cfg)
    assert not zhao.available and zhao.notes[0].startswith("not available")
    assert any("shares 80 of its 100 images" in n for n in zhao.notes)
    published = comparison.published_results(cfg)
    assert published.results == [] and published.unavailable["DBDF"].startswith("not available")


def test_cuhk_te1_puts_our_rows_beside_ddffnets_quoted_numbers():
    rows = pd.DataFrame([{"model": "DBDF", "source": "published maps", "protocol": "ddffnet", "positive": "blur",
                          "metric": m, "value": v, "dataset": "cuhk", "split": "cuhk_zhao_test100", "n_images": 100}
                         for m, v in (("f", 0.88), ("f_no_quirk", 0.80), ("iou", 0.55), ("mae", 0.29))])
    table = cuhk_te1.beside_ddffnet(rows, {"MultiANet (ours)": cuhk_te1.multianet_left_out_reason()})
    dbdf = table[table["method"] == "DBDF"].set_index("metric")
    assert dbdf.loc["fbeta", DDFFNET_QUOTED] == dbdf.loc["fbeta_no_quirk", DDFFNET_QUOTED] == 0.806
    assert dbdf.loc["fbeta_no_quirk", "difference (ours - quoted)"] == pytest.approx(0.80 - 0.806)
    assert dbdf.loc["iou", "difference (ours - quoted)"] == pytest.approx(0.55 - 0.549)
    quoted_only = table[table["source"] == "quoted"]
    assert set(quoted_only["method"]) == {"LBP", "HiFST", "BTBNet", "CENet", "BR2Net", "DD", "D-DFFNet"}
    assert quoted_only["value"].isna().all() and not quoted_only["measured_here"].any()
    ours = table[table["method"] == "MultiANet (ours)"]  # left out, with the reason in the table itself
    assert len(ours) == 4 and ours["value"].isna().all() and ours["note"].str.contains("shares 80 of its 100").all()
    assert len(table) == 8 * 4 + 4


def test_the_headline_is_an_audit_candidate():
    ours = comparison.headline_candidate()
    assert ours in candidates()
    assert (ours.protocol, ours.f_metric, ours.positive, ours.size) == ("sod", "max_f", "blur", "gt")
