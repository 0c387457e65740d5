"""One runner for held-out sweeps: named candidates (RunConfig overrides) x seeds, trained and scored on a held-out
split of Shi's TRAINING images, one table row per candidate x seed x protocol x metric with the budget each took.

    sweep = load_sweep("fidelity")                      # mdbd/sweeps/fidelity.yaml, or a path to such a file
    configs = sweep_configs(sweep, holdout_root)        # every candidate checked before anything trains
    table = run_sweep(sweep, cuhk_root, candidates=["chain-e1", "chain-e3"])

A sweep file declares the profile and dataset every candidate starts from, the held-out split (CUHK ids, e.g.
0001-0544 train / 0545-0604 validation: the test split never takes part in a choice), the seeds, the threads per
run and the candidates. Each run trains in the default folder of its identity (mdbd.runs.identity), so a finished run is
reused and an interrupted one resumed: a sweep extended later costs only its new runs. Scores are kept beside each
checkpoint (mdbd.runs.scoring.evaluate_runs).

Budget columns: epochs, images_seen (optimiser steps x batch), train_seconds (the run's own epochs, as logged),
train_threads, cpu_minutes (train_seconds x threads / 60) and train_flops = forward FLOPs of the model at the
training size x images seen x 3 (forward + backward, the usual estimate; frozen blocks are counted as if they
trained, so recipes compare on one scale).
"""

from __future__ import annotations

import math
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mdbd.runs.checkpoint import read_checkpoint, recorded_training_precision
from mdbd.runs.config import PROFILES, RunConfig, load_config
from mdbd.data.subset import make_cuhk_subset
from mdbd.core.errors import ConfigError
from mdbd.model import build_model
from mdbd.model.multianet import count_flops
import mdbd.core.paths as paths
from mdbd.core.paths import display_path
from mdbd.evaluation.report import save_table, table_path
from mdbd.runs.scoring import evaluate_runs
from mdbd.core.threads import torch_threads
from mdbd.runs.train import train

SWEEPS_DIR = Path(__file__).resolve().parents[1] / "sweeps"
CUHK_ID = "out_of_focus{:04d}"
#: the metrics a sweep reports per protocol
SWEEP_METRICS = ("max_f", "mae")
SWEEP_KEYS = {"name", "title", "profile", "dataset", "holdout", "seeds", "threads", "concurrent", "base", "candidates",
              "protocols", "bootstrap"}


@dataclass
class Sweep:
    name: str  # the table's name under results/<profile>/<dataset>/tables/
    title: str
    profile: str
    dataset: str
    holdout: dict[str, list[int]]  # {"train": [first, last], "val": [first, last]}: CUHK ids, inclusive
    candidates: dict[str, dict[str, Any]]
    seeds: list[int] = field(default_factory=lambda: [0])
    threads: int = 2
    concurrent: int = 1
    base: dict[str, Any] = field(default_factory=dict)
    protocols: list[str] = field(default_factory=lambda: ["sod-blur", "sod"])
    bootstrap: int = 1000

    @property
    def train_ids(self) -> list[str]:
        return _id_range(self.holdout["train"])

    @property
    def val_ids(self) -> list[str]:
        return _id_range(self.holdout["val"])

    def split_label(self) -> str:
        """The tables' `split`: which images were scored, and that they come from the training split."""
        (a, b), (c, d) = self.holdout["train"], self.holdout["val"]
        return f"holdout validation {c:04d}-{d:04d} (from the training split; trained on {a:04d}-{b:04d})"


def _id_range(bounds: list[int]) -> list[str]:
    first, last = bounds
    return [CUHK_ID.format(n) for n in range(first, last + 1)]


def load_sweep(name_or_path: str | Path) -> Sweep:
    """A sweep file: a name under mdbd/sweeps/ (without .yaml) or a path; ConfigError naming what is wrong."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SWEEPS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml")))
        raise ConfigError(f"sweep {name_or_path!r}: no file {path} (sweeps: {known})")
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(raw) - SWEEP_KEYS)
    if unknown:
        raise ConfigError(f"sweep {path}: unknown key(s) {unknown}; known: {', '.join(sorted(SWEEP_KEYS))}")
    missing = sorted({"name", "title", "profile", "dataset", "holdout", "candidates"} - set(raw))
    if missing:
        raise ConfigError(f"sweep {path}: missing key(s) {missing}")
    sweep = Sweep(**raw)
    check_sweep(sweep, source=str(path))
    return sweep


def check_sweep(sweep: Sweep, source: str = "sweep") -> None:
    """The sweep's own settings (not its candidates: sweep_configs checks those against the configuration)."""
    if sweep.profile not in PROFILES:
        raise ConfigError(f"{source}: unknown profile {sweep.profile!r}; choose one of {', '.join(PROFILES)}")
    if sweep.dataset != "cuhk":
        raise ConfigError(f"{source}: dataset {sweep.dataset!r}: sweeps hold out part of Shi's training split, so "
                          "they run on cuhk only")
    for part in ("train", "val"):
        bounds = sweep.holdout.get(part) if isinstance(sweep.holdout, dict) else None
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, int) for b in bounds)
                and 1 <= bounds[0] <= bounds[1] <= 604):
            raise ConfigError(f"{source}: holdout.{part} must be [first, last] ids within Shi's training split "
                              f"0001-0604, got {bounds!r}")
    if set(sweep.train_ids) & set(sweep.val_ids):
        raise ConfigError(f"{source}: holdout train and val overlap")
    if not sweep.candidates or not isinstance(sweep.candidates, dict):
        raise ConfigError(f"{source}: no candidates")
    for name, value in (("threads", sweep.threads), ("concurrent", sweep.concurrent), ("bootstrap", sweep.bootstrap)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{source}: {name} must be an integer >= 1, got {value!r}")
    if not sweep.seeds or not all(isinstance(s, int) for s in sweep.seeds):
        raise ConfigError(f"{source}: seeds must be a list of integers, got {sweep.seeds!r}")


def holdout_root(sweep: Sweep, cuhk_root: str | Path) -> Path:
    """data/cuhk-holdout-<train>-<val>: the held-out split as a CUHK subset (train = held-out training ids, test =
    held-out validation ids), made from `cuhk_root` once and reused."""
    (a, b), (c, d) = sweep.holdout["train"], sweep.holdout["val"]
    root = paths.DATA_DIR / f"cuhk-holdout-{a:04d}-{b:04d}-{c:04d}-{d:04d}"
    if not root.is_dir():
        make_cuhk_subset(cuhk_root, root, train=sweep.train_ids, test=sweep.val_ids)
    return root


def sweep_configs(sweep: Sweep, data_root: str | Path, candidates: list[str] | None = None,
                  seeds: list[int] | None = None) -> list[tuple[str, RunConfig]]:
    """(candidate, config) for every chosen candidate x seed, all checked before anything trains: an unknown
    candidate or field, or an impossible value, is a ConfigError naming the candidate and the field."""
    chosen = list(sweep.candidates) if candidates is None else list(candidates)
    unknown = [c for c in chosen if c not in sweep.candidates]
    if unknown:
        raise ConfigError(f"sweep {sweep.name}: unknown candidate(s) {unknown}; known: {', '.join(sweep.candidates)}")
    out = []
    for name in chosen:
        overrides = sweep.candidates[name] or {}
        if not isinstance(overrides, dict):
            raise ConfigError(f"sweep {sweep.name}: candidate {name!r} must map fields to values, got {overrides!r}")
        for seed in seeds or sweep.seeds:
            try:
                cfg = load_config(sweep.profile, dataset=sweep.dataset, data_root=str(data_root), device="cpu",
                                  **{**sweep.base, **overrides, "seed": seed})
            except ConfigError as exc:
                raise ConfigError(f"sweep {sweep.name}: candidate {name!r}: {exc}") from None
            out.append((name, cfg))
    return out


def run_sweep(sweep: Sweep, cuhk_root: str | Path, candidates: list[str] | None = None,
              seeds: list[int] | None = None, progress: bool = True) -> pd.DataFrame:
    """Train (or find) and score every candidate x seed on the held-out split; the long table (see the module).
    Some `candidates` or `seeds` (an empty list: none) give the sweep's whole table all the same: their rows, and
    every other candidate x seed's from the kept table (merged_with_kept), so that a partial run adds to the table
    instead of replacing it, and `candidates=[]` rebuilds what derives from the table without training."""
    # no candidate: nothing to train, so the held-out copy of the images is not made either
    jobs = [] if candidates == [] else sweep_configs(sweep, holdout_root(sweep, cuhk_root), candidates, seeds)
    if sweep.concurrent > 1 and jobs:
        with ProcessPoolExecutor(sweep.concurrent) as pool:
            tables = list(pool.map(_run_one, [sweep] * len(jobs), *zip(*jobs), [progress] * len(jobs)))
    else:
        tables = [_run_one(sweep, name, cfg, progress) for name, cfg in jobs]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if tables:
        table["split"] = sweep.split_label()
        table["data_root"] = f"cuhk ({display_path(Path(cuhk_root))}) held out as {sweep.split_label()}"
    if candidates is not None or seeds is not None:
        table = merged_with_kept(sweep, table)
    if table.empty:
        raise ConfigError(f"sweep {sweep.name}: no candidate to run and no kept table at "
                          f"{display_path(table_path(sweep.name, sweep.profile, sweep.dataset))}")
    return table


def _run_one(sweep: Sweep, candidate: str, cfg: RunConfig, progress: bool) -> pd.DataFrame:
    started = time.perf_counter()
    with torch_threads(sweep.threads):
        if progress:
            print(f"[sweep {sweep.name}] {candidate} seed {cfg.seed}: {cfg.epochs} epochs, "
                  f"{sweep.threads} thread(s)", flush=True)
        result = train(cfg, resume=True, progress=progress)
        evaluation = evaluate_runs([(result.checkpoint, cfg)], split="test", bootstrap=sweep.bootstrap)[0]
    state = read_checkpoint(result.checkpoint)
    budget = run_budget(cfg, state)
    table = evaluation.table
    table = table[table["protocol"].isin(sweep.protocols) & table["metric"].isin(SWEEP_METRICS)].copy()
    overrides = sweep.candidates[candidate] or {}
    table.insert(0, "candidate", candidate)
    table["overrides"] = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "(the profile as it is)"
    for key, value in budget.items():
        table[key] = value
    table["run"] = result.status
    table["checkpoint"] = display_path(result.checkpoint)
    table["wall_seconds"] = time.perf_counter() - started
    table["source"] = "trained here"
    return table.rename(columns={"model": "method"})


def run_budget(cfg: RunConfig, state: dict[str, Any]) -> dict[str, Any]:
    """The compute a finished run took, from its checkpoint (so a reused run reports its own training)."""
    history = pd.DataFrame(state["history"])
    schedule = state.get("schedule", {})
    images_seen = int(schedule.get("total_steps", 0)) * cfg.batch_size
    threads = _threads_of(str(state.get("device", "")))
    train_seconds = float(history["seconds"].sum())
    flops_per_image = count_flops(build_model(**{**cfg.section("model"), "backbone_weights": "none"}), cfg.image_size)
    return {"epochs": int(state["epoch"]), "images_seen": images_seen, "train_seconds": train_seconds,
            "train_threads": threads, "cpu_minutes": train_seconds * threads / 60 if threads else math.nan,
            "train_flops": 3 * flops_per_image * images_seen, "train_precision": recorded_training_precision(state,
                                                                                                           cfg.to_dict()),
            "freeze_backbone_blocks": cfg.freeze_backbone_blocks, "image_size": cfg.image_size,
            "source_size": cfg.resolved_source_size(), "trained_on": str(state.get("device", ""))}


def _threads_of(device: str) -> int:
    """The thread count in a device name such as 'cpu (AMD EPYC, 2 threads)' (0 when it names none)."""
    match = re.search(r"(\d+) threads?", device)
    return int(match.group(1)) if match else 0


# -- the frontier ------------------------------------------------------------------------------------------

def frontier(table: pd.DataFrame, protocol: str, metric: str, x: str = "cpu_minutes") -> pd.DataFrame:
    """The runs no other run beats at a lower or equal budget `x` (max F: higher is better, MAE: lower), averaged over
    seeds per candidate first; sorted by `x`."""
    sub = table[(table["protocol"] == protocol) & (table["metric"] == metric)]
    columns = {"value": ("value", "mean"), "budget": (x, "mean")}
    if x != "train_flops":
        columns["train_flops"] = ("train_flops", "mean")
    per_candidate = sub.groupby("candidate", as_index=False).agg(**columns)
    per_candidate = per_candidate.sort_values(["budget", "value"], ascending=[True, metric == "mae"])
    better = (lambda a, b: a > b) if metric != "mae" else (lambda a, b: a < b)
    best, keep = None, []
    for _, row in per_candidate.iterrows():
        if best is None or better(row["value"], best):
            best = row["value"]
            keep.append(row)
    out = pd.DataFrame(keep).rename(columns={"budget": x})
    out["protocol"], out["metric"] = protocol, metric
    return out.reset_index(drop=True)


def extrapolate(points: pd.DataFrame, target: float, x: str = "train_flops") -> dict[str, float]:
    """A least-squares line of value against log10(x) through the frontier `points`, and the x at which it would
    reach `target`: an EXTRAPOLATION (nan when the line does not head towards the target or has < 2 points)."""
    if len(points) < 2:
        return {"slope_per_decade": math.nan, "needed": math.nan}
    slope, intercept = np.polyfit(np.log10(points[x].to_numpy(float)), points["value"].to_numpy(float), 1)
    last = float(points["value"].iloc[-1])
    if slope == 0 or (target - last) / slope < 0:
        return {"slope_per_decade": float(slope), "needed": math.nan}
    return {"slope_per_decade": float(slope), "needed": float(10 ** ((target - intercept) / slope))}


# -- the compute-fidelity summary ---------------------------------------------------------------------------

#: the paper profile's epochs and Shi's training images: the assumption behind paper_training_flops (the paper gives
#: no epoch count, only about 3 hours on a Titan Xp; mdbd/profiles/paper.yaml explains the 60)
PAPER_EPOCHS, PAPER_TRAIN_IMAGES, PAPER_SIZE = 60, 604, 320
#: the fidelity sweep's candidate that is the real chain's recipe: "chain-e<N>" (mdbd/sweeps/fidelity.yaml) at the
#: epochs of the laptop profile's cuhk section, read from the profile (its one home)
CHAIN_CANDIDATE = f"chain-e{load_config('laptop', dataset='cuhk').epochs}"


def paper_training_flops() -> float:
    """An ESTIMATE of the paper's training compute: the full model's forward FLOPs at 320 px x 604 images x 60 epochs
    x 3 (our paper profile's assumptions, not the paper's numbers)."""
    return 3 * count_flops(build_model("multianet", backbone_weights="none"), PAPER_SIZE) * PAPER_TRAIN_IMAGES \
        * PAPER_EPOCHS


def fidelity_summary(table: pd.DataFrame, quoted: dict[str, float], chain: str = CHAIN_CANDIDATE) -> pd.DataFrame:
    """Per protocol and metric: the chain recipe's value, the frontier's best, the frontier's slope per tenfold of
    training FLOPs and, where the paper's value is `quoted` ({"max_f": .., "mae": ..}, headline protocol only), the
    FLOPs at which the frontier's line would reach it (an EXTRAPOLATION) beside our estimate of the paper's budget."""
    paper_flops = paper_training_flops()
    rows = []
    for (protocol, metric), _ in table.groupby(["protocol", "metric"], sort=False):
        front = frontier(table, protocol, metric, x="train_flops")
        sub = table[(table["protocol"] == protocol) & (table["metric"] == metric)]
        chain_rows = sub[sub["candidate"] == chain]
        target = quoted.get(metric, math.nan) if protocol == "sod-blur" else math.nan
        line = extrapolate(front, target) if not math.isnan(target) else extrapolate(front, front["value"].iloc[-1])
        best = front.iloc[-1]
        rows.append({"protocol": protocol, "metric": metric,
                     "chain_recipe": chain_rows["value"].mean() if len(chain_rows) else math.nan,
                     "best_candidate": best["candidate"], "best_value": best["value"],
                     "best_train_flops": best["train_flops"], "frontier": " -> ".join(front["candidate"]),
                     "slope_per_tenfold_flops": line["slope_per_decade"], "paper (quoted)": target,
                     "flops_to_reach_paper (extrapolation)": line["needed"] if not math.isnan(target) else math.nan,
                     "paper_budget_flops (estimate)": paper_flops})
    return pd.DataFrame(rows)


def merged_with_kept(sweep: Sweep, table: pd.DataFrame) -> pd.DataFrame:
    """`table` (some candidates x seeds of the sweep) with the rows of every OTHER candidate x seed its kept table
    holds, in the sweep's candidate order: a run of a few candidates adds to the sweep's table instead of replacing
    it."""
    kept_path = table_path(sweep.name, sweep.profile, sweep.dataset)
    if not kept_path.is_file():
        return table
    kept = pd.read_csv(kept_path)
    if table.empty:
        return kept
    ran = set(zip(table["candidate"], table["seed"]))
    others = kept[[(c, s) not in ran for c, s in zip(kept["candidate"], kept["seed"])]]
    merged = pd.concat([others, table], ignore_index=True)
    order = {name: i for i, name in enumerate(sweep.candidates)}
    rank = merged["candidate"].map(lambda c: order.get(c, len(order)))
    return merged.assign(_rank=rank).sort_values(["_rank", "seed"], kind="stable").drop(columns="_rank") \
        .reset_index(drop=True)


def save_sweep_table(sweep: Sweep, table: pd.DataFrame, leading: list[str] | None = None) -> dict[str, Path]:
    """The sweep's table (run_sweep's: whole, even after a partial run) under results/<profile>/cuhk/tables/<sweep
    name> (CSV and Markdown) with its held-out provenance, `leading` columns first; printed."""
    leading = leading or ["candidate", "seed", "protocol", "metric", "value", "ci_low", "ci_high", "cpu_minutes",
                          "train_flops"]
    table = table[leading + [c for c in table.columns if c not in leading]]
    paths = save_table(table, sweep.name, profile=sweep.profile, dataset=sweep.dataset, title=sweep.title,
                       provenance={"dataset": sweep.dataset, "source": "trained here"})
    print(table[leading].to_string(index=False))
    print(f"wrote {paths['csv']}")
    return paths
