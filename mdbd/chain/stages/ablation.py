"""03 ablation (Table III): the seven presets x the profile's ablation seeds, their table beside the paper's, and a
plain verdict on whether the paper's ordering holds."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from mdbd.runs.checkpoint import load_checkpoint
from mdbd.runs.config import DEFAULT_ATTENTION_SCALE, DEFAULT_SPATIAL_GATE, RunConfig
from mdbd.core.errors import ConfigError
from mdbd.evaluation.evaluate import paired_comparison
from mdbd.model import PRESETS
from mdbd.model.diagnostics import attention_statistics
from mdbd.runs.parallel import Job, JobResult, raise_for_failures, run_jobs, threads_per_run
from mdbd.core.provenance import resolve_device
from mdbd.evaluation.report import QUOTED, beside_paper, table_title
from mdbd.runs.rundir import RunDir
from mdbd.chain.stages.common import HEADLINE, display_path, evaluate_runs, headline, open_split


def model_variant(attention_scale: str | None = None, spatial_gate: str | None = None) -> tuple[dict[str, str], str]:
    """(RunConfig overrides, table-name suffix) of an ablation with non-default attention forms (None: the default):
    e.g. ("none", "sigmoid"), the paper's eq. 1 and eq. 3 literally, gives suffix "_attention-none_gate-sigmoid", so
    its tables sit beside (never over) the default's."""
    overrides, suffix = {}, ""
    if attention_scale is not None:
        overrides["attention_scale"], suffix = attention_scale, f"_attention-{attention_scale}"
    if spatial_gate is not None:
        overrides["spatial_gate"], suffix = spatial_gate, f"{suffix}_gate-{spatial_gate}"
    return overrides, suffix


def variant_suffix(cfg: RunConfig) -> str:
    """The table-name suffix of `cfg`'s attention forms (model_variant's, "" for the defaults): notebook 03 and
    `mdbd ablation` name their tables alike, so a non-default form never overwrites the default's tables."""
    scale = cfg.attention_scale if cfg.attention_scale != DEFAULT_ATTENTION_SCALE else None
    gate = cfg.spatial_gate if cfg.spatial_gate != DEFAULT_SPATIAL_GATE else None
    return model_variant(scale, gate)[1]


def table_iii_title(cfg: RunConfig) -> str:
    """Table III's title, the same from notebook 03 and `mdbd ablation`: the headline protocol its values are under
    and the attention forms."""
    return table_title(f"Table III (ablation): F_beta = {HEADLINE['fbeta'][0]} {HEADLINE['fbeta'][1]}, MAE; "
                       f"attention_scale {cfg.attention_scale}, spatial_gate {cfg.spatial_gate}", cfg.dataset, "test",
                       HEADLINE["fbeta"][0])


def ablation_presets(cfg: RunConfig) -> list[str]:
    """The presets of the profile's ablation (`ablation.presets`, None: all seven, in Table III's order)."""
    chosen = cfg.ablation.presets or tuple(PRESETS)
    unknown = [p for p in chosen if p not in PRESETS]
    if unknown:
        raise ConfigError(f"ablation.presets names unknown preset(s) {unknown}; presets: {', '.join(PRESETS)}")
    return [p for p in PRESETS if p in chosen]


def ablation_configs(cfg: RunConfig) -> list[RunConfig]:
    """The Table III presets (all seven, or the profile's `ablation.presets`) x the profile's ablation seeds, each in
    the default folder of its identity.

    A run that repeats one of 02_train's (same preset, seed, epochs and everything else: the paper profile's
    multianet and hl at seed 0) is the same run and is shared; any difference (e.g. an epochs override in 02) is
    another identity, hence another folder (mdbd.runs.identity)."""
    epochs = cfg.ablation.epochs or cfg.epochs
    return [cfg.replace(preset=preset, seed=seed, epochs=epochs, run_dir=None)
            for seed in cfg.ablation.seeds for preset in ablation_presets(cfg)]


def run_ablation(cfg: RunConfig, progress: bool = True, bootstrap: int = 1000, concurrent: int | None = None,
                 threads: int | None = None) -> pd.DataFrame:
    """Train (or resume) every ablation run, then score them all; one headline row per run x metric.

    `concurrent`: runs at once (mdbd.runs.parallel: that many processes, sharing a GPU; 1 = one after another in this
    process; None: the profile's `concurrent_runs`); `threads`: CPU threads per run (None: on a CPU, this
    process's threads shared out between the runs). Same seeds, same results (on CPU bit for bit at equal
    `threads`)."""
    concurrent = concurrent or cfg.concurrent_runs
    threads = threads or threads_per_run(resolve_device(cfg.device), concurrent)

    # train (or find) every run first, then score them together: the runs share their frozen backbone blocks,
    # which are most of a prediction's cost (evaluate_runs)
    configs = ablation_configs(cfg)
    order = launch_order(configs)
    launched = run_jobs([Job(configs[i], evaluate=False) for i in order], concurrent=concurrent, threads=threads,
                        progress=progress)
    results = [result for _, result in sorted(zip(order, launched), key=lambda pair: pair[0])]
    raise_for_failures(results)
    # F_beta and MAE are all Table III reads: no structure metrics (mdbd.runs.scoring.EXTENDED_METRICS)
    evaluations = evaluate_runs([(r.checkpoint, r.job.config) for r in results], bootstrap=bootstrap, extended=False)
    rows = []
    for result, evaluation in zip(results, evaluations):
        table = run_rows(result, evaluation.table)
        table["concurrency"] = result.form
        rows.append(table)
    return pd.concat(rows, ignore_index=True)


def run_rows(result: JobResult, evaluation: pd.DataFrame) -> pd.DataFrame:
    """One ablation run's headline rows (F_beta and MAE with their intervals, from its long score table
    `evaluation`) with the run's seed, epochs, checkpoint, what training did and its training time: the rows
    ablation_table reads (also scripts/gpu_paper_cuhk.py's)."""
    run_cfg = result.job.config
    table = headline(evaluation)
    table["seed"] = run_cfg.seed
    table["epochs"] = run_cfg.epochs
    table["checkpoint"] = display_path(result.checkpoint)
    table["run"] = result.trained  # trained | resumed | reused (an earlier run of the same identity)
    table["train_seconds"] = result.train_seconds
    return table


def launch_order(configs: Sequence[RunConfig]) -> list[int]:
    """Indices of `configs` in the order to start them: runs already finished first (they are only found), then
    the runs with more modules (longer steps) before those with fewer, so that the run left training alone at the end
    of a batch of concurrent runs is a short one."""
    def key(index: int) -> tuple[bool, int]:
        cfg = configs[index]
        # finished: a guess for ordering only (a checkpoint and a log of all its epochs); train() checks the identity
        return (not RunDir.of(cfg).looks_finished(cfg.epochs), -len(PRESETS[cfg.preset].modules))

    return sorted(range(len(configs)), key=key)


#: what ablation_table's interval columns mean (its `interval` column says which applies to a row)
SEED_INTERVAL = "95% t-interval over {n} seeds: mean +- t(0.975, n-1) x sd / sqrt(n)"
ONE_SEED = ("no interval over seeds (one seed); bootstrap_ci_low/high: that run's 95% per-image bootstrap "
            "(test images resampled; the model's training noise is not in it)")


def seed_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the t-interval for the mean over seeds; low and high are NaN for fewer than 2 seeds."""
    from scipy.stats import t

    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, math.nan, math.nan
    half = float(t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


def ablation_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per preset and metric: the mean over seeds, its sd and its t-interval OVER SEEDS (ci_low, ci_high; NaN for
    one seed), beside Table III's quoted numbers. With one seed the run's per-image bootstrap interval is kept in
    bootstrap_ci_low/high (with several, each run's is in the runs table); the `interval` column says which is which."""
    rows = []
    for (method, metric), group in runs.groupby(["method", "metric"], sort=False):
        per_seed = group.groupby("seed")["value"].mean()  # one value per seed
        mean, low, high = seed_interval(per_seed.to_numpy())
        one = len(per_seed) == 1
        rows.append({"method": method, "metric": metric, "value": mean,
                     "std": float(per_seed.std(ddof=1)) if not one else math.nan, "ci_low": low, "ci_high": high,
                     "seeds": len(per_seed), "interval": ONE_SEED if one else SEED_INTERVAL.format(n=len(per_seed)),
                     "bootstrap_ci_low": float(group["ci_low"].iloc[0]) if one else math.nan,
                     "bootstrap_ci_high": float(group["ci_high"].iloc[0]) if one else math.nan})
    table = pd.DataFrame(rows)
    first = runs.drop_duplicates(["method", "metric"]).set_index(["method", "metric"])
    for col in ("dataset", "split", "protocol", "profile", "device", "weights", "epochs"):
        if col in first:
            table[col] = [first.loc[(m, k), col] for m, k in zip(table["method"], table["metric"])]
    table["seed"] = ",".join(str(s) for s in sorted(runs["seed"].unique()))
    table["table_iii_row"] = [PRESETS[m].table_label for m in table["method"]]
    table = beside_paper(table, "III", paper_dataset="dut")  # Table III was measured on DUT
    table = table[table["method"].isin(set(runs["method"]))]  # an ablation of some presets: only the rows it ran
    order = {name: i for i, name in enumerate(PRESETS)}
    return table.sort_values(["metric", "method"], key=lambda s: s.map(order) if s.name == "method" else s) \
        .reset_index(drop=True)


def ordering_verdict(table: pd.DataFrame) -> dict[str, Any]:
    """Does our ablation reproduce the paper's ordering of Table III?

    Checks (a) the full model is best on F_beta and on MAE, (b) every row beats the HL baseline, and (c) the Spearman
    rank correlation of our per-row values with the paper's (per metric)."""
    from scipy.stats import spearmanr

    out: dict[str, Any] = {}
    for metric, better in (("fbeta", "max"), ("mae", "min")):
        sub = table[table["metric"] == metric].set_index("method")
        ours, paper = sub["value"], sub[QUOTED]
        best = ours.idxmax() if better == "max" else ours.idxmin()
        beats = (ours > ours["hl"]) if better == "max" else (ours < ours["hl"])
        rho = spearmanr(ours.values, paper.values).statistic if len(ours) > 2 else math.nan
        out[metric] = {"best_row": best, "full_model_best": best == "multianet",
                       "rows_beating_hl": int(beats.drop("hl").sum()), "of": len(ours) - 1,
                       "spearman_with_paper": float(rho)}
    out["reproduced"] = all(out[m]["full_model_best"] for m in ("fbeta", "mae"))
    return out


def verdict_text(verdict: dict[str, Any], synthetic: bool) -> str:
    lines = []
    for metric in ("fbeta", "mae"):
        v = verdict[metric]
        best = "the full model, as in the paper" if v["full_model_best"] else "NOT the full model, unlike the paper"
        lines.append(f"- {metric}: best row is {v['best_row']} ({best}); "
                     f"{v['rows_beating_hl']}/{v['of']} rows beat the HL baseline; Spearman correlation with the "
                     f"paper's ordering {v['spearman_with_paper']:.2f}")
    head = ("The paper's ordering of Table III (full model best on both metrics) IS reproduced"
            if verdict["reproduced"] else "The paper's ordering of Table III is NOT reproduced")
    where = " on the synthetic benchmark (not on DUT, where the paper measured it)" if synthetic else ""
    return f"{head}{where}.\n" + "\n".join(lines)


def attention_diagnostics(cfg: RunConfig, n_images: int = 3, size: int | None = None) -> pd.DataFrame:
    """The attention statistics (mdbd.model.diagnostics) of the ablation's full model, the multianet run of
    `ablation_configs` (first seed), on the first `n_images` test images with their masks (for the gradient of one
    BCE step), at `size` (default: the run's training size). Tidy: one row per image x module x statistic."""
    run_cfg = next(c for c in ablation_configs(cfg) if c.preset == "multianet")
    checkpoint = RunDir.of(run_cfg).checkpoint
    model, saved, meta = load_checkpoint(checkpoint, expected_preset="multianet", device=cfg.device)
    pairs = open_split(run_cfg, "test")
    samples = [pairs[i] for i in range(min(n_images, len(pairs)))]
    return attention_statistics(model, [s.image for s in samples], [s.mask for s in samples],
                                ids=[s.id for s in samples], size=size or run_cfg.image_size,
                                device=cfg.device or "cpu", checkpoint=display_path(checkpoint),
                                epoch=meta.get("epoch"), dataset=run_cfg.dataset, split="test", seed=run_cfg.seed,
                                weights=str(model.backbone_source))


#: the contrasts of the paired Table III: (row, reference row). Every preset against the HL baseline, and the full
#: model against HL+LL (what the three attention modules add together).
PAIRED_CONTRASTS = tuple((preset, "hl") for preset in ("hl_ll", "hl_ll_hca", "hl_ll_hca_sa", "hl_ll_hca_lca",
                                                          "hl_ll_lca_sa", "multianet")) + (("multianet", "hl_ll"),)
PAIRED_INTERVAL = ("95% paired percentile bootstrap: the same test images resampled for both rows, {seeds} "
                   "(test images and training seeds both vary in it)")


def paired_ablation_table(cfg: RunConfig, bootstrap: int = 1000, confidence: float = 0.95) -> pd.DataFrame:
    """Each PAIRED_CONTRASTS row minus its reference under the headline protocol, with a PAIRED bootstrap interval
    over the same test images (and the seeds, where there are several: mdbd.metrics.paired_difference), beside the
    paper's own gain on DUT (quoted) and whether that gain lies inside our interval. Reads the runs of
    `ablation_configs` (run_ablation must have trained them) and their kept scores."""
    configs = ablation_configs(cfg)
    evaluations = evaluate_runs([(RunDir.of(c).checkpoint, c) for c in configs], bootstrap=bootstrap, extended=False)
    by_preset: dict[str, list] = {}
    for run_cfg, evaluation in zip(configs, evaluations):
        by_preset.setdefault(run_cfg.preset, []).append(evaluation)
    keys = pd.MultiIndex.from_product([list(PRESETS), list(HEADLINE)], names=["method", "metric"])
    quoted = beside_paper(keys.to_frame(index=False).assign(value=math.nan), "III",
                          paper_dataset="dut").set_index(["method", "metric"])[QUOTED]
    contrasts = [(row, ref) for row, ref in PAIRED_CONTRASTS if row in by_preset and ref in by_preset]
    n_seeds = len(cfg.ablation.seeds)
    seeds_text = "one seed per row" if n_seeds == 1 else f"{n_seeds} seeds per row resampled with replacement"
    rows = []
    for row, reference in contrasts:
        for metric, (protocol, name) in HEADLINE.items():
            diff, low, high = paired_comparison(by_preset[row], by_preset[reference], protocol, n_boot=bootstrap,
                                                seed=cfg.seed, confidence=confidence)[name]
            paper_gain = float(quoted.get((row, metric), math.nan) - quoted.get((reference, metric), math.nan))
            rows.append({"contrast": f"{row} vs {reference}", "metric": metric, "difference": diff,
                         "ci_low": low, "ci_high": high, "paired": contrast_text(diff, low, high),
                         "excludes_zero": bool(low > 0 or high < 0),
                         "paper_gain (quoted, dut)": paper_gain,
                         "paper_gain_in_interval": where_in_interval(paper_gain, low, high),
                         "row": PRESETS[row].table_label, "reference": PRESETS[reference].table_label,
                         "protocol": f"{protocol}:{name}", "seeds": n_seeds,
                         "interval": PAIRED_INTERVAL.format(seeds=seeds_text), "n_boot": bootstrap})
    table = pd.DataFrame(rows)
    first = configs[0]
    table["dataset"], table["split"] = first.dataset, "test"
    table["epochs"] = first.epochs
    table["seed"] = ",".join(str(s) for s in cfg.ablation.seeds)
    return table


def contrast_text(diff: float, low: float, high: float) -> str:
    """'+0.004 [-0.002, +0.010]'."""
    return f"{diff:+.3f} [{low:+.3f}, {high:+.3f}]"


def where_in_interval(value: float, low: float, high: float) -> str:
    """inside | above | below (the interval), or 'not quoted' for NaN."""
    if math.isnan(value):
        return "not quoted"
    return "inside" if low <= value <= high else ("above" if value > high else "below")
