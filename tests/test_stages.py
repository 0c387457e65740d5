"""The study's stages (mdbd.chain.stages): Table I/III beside the paper, the Table III ordering verdict, shared
helpers."""

import numpy as np
import pandas as pd
import pytest

from mdbd.chain.stages import ablation, comparison, common
from mdbd.runs.config import load_config
from mdbd.model import PRESETS
from mdbd.evaluation.report import QUOTED


def _runs(fbeta: dict, mae: dict, dataset="synthetic") -> pd.DataFrame:
    rows = []
    for preset in PRESETS:
        for metric, values in (("fbeta", fbeta), ("mae", mae)):
            v = values[preset]
            rows.append({"method": preset, "metric": metric, "value": v, "ci_low": v - 0.01, "ci_high": v + 0.01,
                         "seed": 0, "dataset": dataset, "split": "test", "protocol": "sod", "profile": "smoke",
                         "device": "cpu", "weights": "oxford", "epochs": 1})
    return pd.DataFrame(rows)


PAPER_F = {"hl": 0.924, "hl_ll": 0.937, "hl_ll_hca": 0.938, "hl_ll_hca_sa": 0.944, "hl_ll_hca_lca": 0.938,
           "hl_ll_lca_sa": 0.940, "multianet": 0.950}
PAPER_MAE = {"hl": 0.132, "hl_ll": 0.101, "hl_ll_hca": 0.092, "hl_ll_hca_sa": 0.088, "hl_ll_hca_lca": 0.089,
             "hl_ll_lca_sa": 0.087, "multianet": 0.078}


def test_ablation_configs_cover_every_preset_and_seed_in_separate_folders():
    cfg = load_config("paper", device="cpu")
    configs = ablation.ablation_configs(cfg)
    assert len(configs) == 7 * len(cfg.ablation.seeds)
    assert len({c.resolved_run_dir() for c in configs}) == len(configs)
    assert all(c.epochs == cfg.epochs for c in configs)  # paper: ablation.epochs null -> the profile's
    # the same identity as 02_train's run (paper: same epochs) is the same run folder, shared; the smoke profile's
    # ablation trains 1 epoch instead of 2: another identity, never 02's folder
    assert cfg.resolved_run_dir() in {c.resolved_run_dir() for c in configs}
    assert cfg.replace(preset="hl").resolved_run_dir() in {c.resolved_run_dir() for c in configs}
    assert cfg.replace(epochs=20).resolved_run_dir() not in {c.resolved_run_dir() for c in configs}
    smoke = ablation.ablation_configs(load_config("smoke", device="cpu"))
    assert all(c.epochs == load_config("smoke").ablation.epochs for c in smoke)
    assert load_config("smoke", device="cpu").resolved_run_dir() not in {c.resolved_run_dir() for c in smoke}


def test_evaluate_run_reads_folder_masks_with_the_configured_polarity(monkeypatch, tmp_path):
    import mdbd.runs.scoring

    seen = {}
    monkeypatch.setattr(mdbd.runs.scoring, "evaluate_checkpoints",
                        lambda *args, **kwargs: seen.update(kwargs) or [None])
    cfg = load_config("smoke", dataset="folder", data_root=str(tmp_path), polarity="blur_white", device="cpu")
    common.evaluate_run(tmp_path / "last.pt", cfg, bootstrap=0)
    assert seen["polarity"] == "blur_white"


def test_a_run_is_scored_once_until_its_checkpoint_or_the_scoring_changes(tiny_multianet, monkeypatch):
    import mdbd.runs.scoring

    checkpoint, data_root = tiny_multianet
    cfg = load_config("smoke", data_root=str(data_root), device="cpu")
    first = common.evaluate_run(checkpoint, cfg, bootstrap=20)
    calls = []
    real = mdbd.runs.scoring.evaluate_checkpoints
    monkeypatch.setattr(mdbd.runs.scoring, "evaluate_checkpoints", lambda *a, **k: calls.append(k) or real(*a, **k))
    again = common.evaluate_run(checkpoint, cfg, bootstrap=20)
    assert calls == [] and again.table.equals(first.table) and again.curves.equals(first.curves)
    other = common.evaluate_run(checkpoint, cfg, bootstrap=30)  # another setting: scored afresh
    assert len(calls) == 1 and len(other.table) == len(first.table)
    common.evaluate_run(checkpoint, cfg.replace(seed=1), bootstrap=20)  # the bootstrap's seed too
    assert len(calls) == 2
    monkeypatch.setattr(mdbd.runs.scoring, "_scoring_digest", lambda: "edited")  # an edit of the model or scoring code
    common.evaluate_run(checkpoint, cfg, bootstrap=20)
    assert len(calls) == 3


def test_table_iii_scores_without_the_structure_metrics_unless_a_kept_result_has_them(tiny_multianet, monkeypatch,
                                                                                        tmp_path):
    """Table III reads F_beta and MAE only: its runs are scored without S-, E-measure and weighted F (a minute per
    run on Shi's data), and a result kept with them (02's runs) serves without scoring again."""
    import shutil

    import mdbd.runs.scoring

    checkpoint, data_root = tiny_multianet
    cfg = load_config("smoke", data_root=str(data_root), device="cpu")
    structure = {"sm", "max_em", "mean_em", "adaptive_em", "wfm"}
    (tmp_path / "plain").mkdir()
    plain_checkpoint = shutil.copy(checkpoint, tmp_path / "plain" / "last.pt")
    plain = common.evaluate_runs([(plain_checkpoint, cfg)], bootstrap=20, extended=False)[0]
    assert not structure & set(plain.table["metric"])
    full = common.evaluate_run(checkpoint, cfg, bootstrap=20)
    assert structure <= set(full.table["metric"])
    same = full.table[~full.table["metric"].isin(structure)].reset_index(drop=True)
    assert same[["protocol", "metric", "value"]].equals(plain.table[["protocol", "metric", "value"]])
    calls = []
    monkeypatch.setattr(mdbd.runs.scoring, "evaluate_checkpoints", lambda *a, **k: calls.append(k))
    served = common.evaluate_runs([(checkpoint, cfg)], bootstrap=20, extended=False)[0]
    assert calls == [] and served.table.equals(full.table)


def test_runs_not_yet_scored_are_predicted_together_with_the_numbers_of_one_at_a_time(tiny_multianet, monkeypatch,
                                                                                        tmp_path):
    import shutil

    import mdbd.runs.scoring

    checkpoint, data_root = tiny_multianet
    cfg = load_config("smoke", data_root=str(data_root), device="cpu")
    copies = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        copies.append(shutil.copy(checkpoint, tmp_path / name / "last.pt"))
    alone = common.evaluate_run(copies[0], cfg, bootstrap=20)  # scored alone, and kept
    calls = []
    real = mdbd.runs.scoring.evaluate_checkpoints
    monkeypatch.setattr(mdbd.runs.scoring, "evaluate_checkpoints",
                        lambda c, *a, **k: calls.append(list(c)) or real(c, *a, **k))
    both = common.evaluate_runs([(copies[0], cfg), (copies[1], cfg.replace(seed=3))], bootstrap=20)
    assert calls == [[copies[1]]]  # the first was kept; only the second is predicted
    assert both[0].table.equals(alone.table)
    fresh = common.evaluate_runs([(copies[0], cfg.replace(seed=3)), (copies[1], cfg)], bootstrap=20)
    assert calls[1:] == [[copies[0], copies[1]]]  # neither scored so: predicted together, in one call
    # the same model scored with the same seed gives the same numbers alone or beside another
    assert fresh[1].table.equals(alone.table)
    assert both[1].table.equals(fresh[0].table)


def test_run_concurrency_comes_from_the_profile_and_is_checked():
    from mdbd.core.errors import ConfigError

    # the laptop profile trains two runs at a time on both datasets (the main job's budget); the others one
    assert load_config("laptop", dataset="cuhk").concurrent_runs == 2 == load_config("laptop").concurrent_runs
    assert load_config("paper").concurrent_runs == 1
    with pytest.raises(ConfigError, match="concurrent_runs must be an integer >= 1, got 0"):
        load_config("smoke", concurrent_runs=0)
    # not part of a run's identity: the same model, trained alone or beside another
    cfg = load_config("smoke", device="cpu")
    assert cfg.replace(concurrent_runs=2).resolved_run_dir() == cfg.resolved_run_dir()


def test_the_attention_scale_is_part_of_a_runs_identity_only_where_there_is_channel_attention():
    cfg = load_config("smoke", device="cpu")
    for preset in PRESETS:
        a = cfg.replace(preset=preset, attention_scale="none").resolved_run_dir()
        b = cfg.replace(preset=preset, attention_scale="cosine").resolved_run_dir()
        assert (a == b) == (preset in ("hl", "hl_ll")), preset


def test_ablation_table_puts_quoted_values_beside_ours_and_averages_seeds():
    a = _runs(PAPER_F, PAPER_MAE)
    b = _runs({k: v - 0.02 for k, v in PAPER_F.items()}, PAPER_MAE).assign(seed=1)
    table = ablation.ablation_table(pd.concat([a, b]))
    row = table[(table["method"] == "multianet") & (table["metric"] == "fbeta")].iloc[0]
    assert row["value"] == pytest.approx(0.940) and row[QUOTED] == 0.950 and row["seeds"] == 2
    assert row["std"] == pytest.approx(np.std([0.95, 0.93], ddof=1))
    assert row["table_iii_row"] == "VGG+HL+LL+HCA+LCA+SA"
    assert pd.isna(row["difference (ours - quoted)"])  # synthetic vs DUT: no difference is computed
    assert list(table[table["metric"] == "fbeta"]["method"]) == list(PRESETS)


def test_ordering_verdict_reproduced_when_our_numbers_follow_the_paper():
    verdict = ablation.ordering_verdict(ablation.ablation_table(_runs(PAPER_F, PAPER_MAE)))
    assert verdict["reproduced"]
    assert verdict["fbeta"]["spearman_with_paper"] == pytest.approx(1.0, abs=0.05)
    assert verdict["fbeta"]["rows_beating_hl"] == 6
    assert "IS reproduced on the synthetic benchmark" in ablation.verdict_text(verdict, synthetic=True)


def test_ordering_verdict_not_reproduced_when_baseline_wins():
    f = dict(PAPER_F, hl=0.99)
    verdict = ablation.ordering_verdict(ablation.ablation_table(_runs(f, PAPER_MAE)))
    assert not verdict["reproduced"]
    assert verdict["fbeta"]["best_row"] == "hl" and verdict["fbeta"]["rows_beating_hl"] == 0
    assert "NOT reproduced" in ablation.verdict_text(verdict, synthetic=False)


def test_table_one_marks_quoted_only_rows_and_keeps_synthetic_apart():
    rows = []
    headline_protocol = common.HEADLINE["fbeta"][0]
    for model, f, mae in (("MultiANet (ours)", 0.9, 0.1), ("HiFST", 0.7, 0.3), ("LBP", 0.72, 0.28)):
        for protocol, metric, value in ((headline_protocol, "max_f", f), (headline_protocol, "mae", mae),
                                        ("zhao", "max_f", f + 0.01)):
            rows.append({"model": model, "protocol": protocol, "metric": metric, "value": value, "ci_low": value,
                         "ci_high": value, "dataset": "synthetic", "split": "test", "profile": "smoke",
                         "device": "cpu", "seed": 0, "weights": "x", "n_images": 8})
    table = comparison.table_one(pd.DataFrame(rows), load_config("smoke"))
    ours = table[(table["method"] == "MultiANet (ours)") & (table["metric"] == "fbeta")].iloc[0]
    assert ours["value"] == 0.9 and ours[f"{QUOTED}: cuhk"] == 0.951 and ours[f"{QUOTED}: dut"] == 0.950
    assert pd.isna(ours["difference vs cuhk"])
    quoted_only = table[table["method"].str.contains("quoted only")]
    assert {m.split(" ")[0] for m in quoted_only["method"]} == {"ASVB", "DBDF", "SS", "BTBNet", "DeFusionNet", "BR2Net"}
    assert quoted_only["value"].isna().all()
    assert len(table) == 2 * 9  # nine methods x (fbeta, mae); Zhao's protocol stays out of Table I


def test_display_path_hides_machine_specific_prefixes(monkeypatch, tmp_path):
    from mdbd.core.paths import REPO_ROOT

    assert common.display_path(REPO_ROOT / "data" / "x") == "data/x"
    monkeypatch.setenv("MDBD_SHARED_DATA", str(tmp_path))
    assert common.display_path(tmp_path / "cuhk") == "$MDBD_SHARED_DATA/cuhk"


def test_the_interval_over_seeds_is_computed_over_seeds_not_from_the_bootstrap_bounds():
    """Three seeds 0.90, 0.92, 0.97 (each with a narrow per-image bootstrap interval): mean 0.93, sd 0.036056,
    t(0.975, 2) = 4.302653 -> half-width 4.302653 x 0.036056 / sqrt(3) = 0.089567. Averaging the bootstrap
    bounds would give [0.92, 0.94], far too narrow for three seeds this far apart."""
    runs = pd.concat([_runs({k: v for k in PAPER_F}, PAPER_MAE).assign(seed=seed)
                      for seed, v in ((0, 0.90), (1, 0.92), (2, 0.97))])
    row = ablation.ablation_table(runs).query("method == 'multianet' and metric == 'fbeta'").iloc[0]
    assert row["value"] == pytest.approx(0.93) and row["std"] == pytest.approx(0.0360555, abs=1e-6)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.93 - 0.0895669, 0.93 + 0.0895669), abs=1e-6)
    assert row["interval"].startswith("95% t-interval over 3 seeds") and pd.isna(row["bootstrap_ci_low"])
    one = ablation.ablation_table(_runs(PAPER_F, PAPER_MAE)).query("method == 'hl' and metric == 'mae'").iloc[0]
    assert pd.isna(one["ci_low"]) and pd.isna(one["ci_high"]) and pd.isna(one["std"])
    assert one["interval"].startswith("no interval over seeds (one seed)")
    assert (one["bootstrap_ci_low"], one["bootstrap_ci_high"]) == pytest.approx((0.122, 0.142))


def test_the_reference_runs_of_02_are_scored_without_the_structure_metrics(tiny_multianet, monkeypatch):
    """02's references (HL) appear in headline rows only (02's comparison, Table III): their workers skip the S-, E-
    measure and weighted F, and the MultiANet's own scoring keeps them."""
    import mdbd.chain.stages.training as training
    from mdbd.runs.parallel import Job, run_job

    checkpoint, data_root = tiny_multianet
    cfg = load_config("smoke", data_root=str(data_root), device="cpu", run_dir=str(checkpoint.parent))
    structure = {"sm", "max_em", "mean_em", "adaptive_em", "wfm"}
    _, plain = run_job(Job(cfg, train=False, bootstrap=10, extended=False))
    _, full = run_job(Job(cfg, train=False, bootstrap=10))
    assert not structure & set(plain.table["metric"]) and structure <= set(full.table["metric"])
    started = []
    monkeypatch.setattr(training, "Background", lambda jobs, threads: started.extend(jobs) or "bg")
    background, _ = training.start_references(cfg.replace(concurrent_runs=2), ["multianet", "hl"])
    assert background == "bg" and [(j.config.preset, j.extended) for j in started] == [("hl", False)]


def test_table_ii_times_the_full_model_with_the_runs_model_options(monkeypatch):
    """Table II (06) builds MultiANet from the run's model section (its attention form), never a second default."""
    import torch

    from mdbd.chain.stages import runtime

    built = {}

    def fake_build_model(**options):
        built.update(options)
        return torch.nn.Conv2d(3, 1, 1)

    monkeypatch.setattr(runtime, "build_model", fake_build_model)
    cfg = load_config("smoke", device="cpu", preset="hl", attention_scale="none", spatial_gate="sigmoid")
    assert runtime.model_seconds_per_image(cfg, size=8, iters=1) > 0
    assert built == {"preset": "multianet", "backbone_weights": "none", "attention_scale": "none",
                     "spatial_gate": "sigmoid"}
