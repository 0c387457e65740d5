"""The study's steps, one function per notebook cell that does real work, so that notebooks stay thin and the logic
is tested. Every table returned here carries its provenance columns (dataset, split, protocol, profile, device, seed,
weights)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import pandas as pd

from mdbd.config import RunConfig
from mdbd.errors import DataError
from mdbd.paths import (
    DATA_DIR,
    REPO_ROOT,
    RESULTS_DIR,
    SHARED_DATA_ENV,
    shared_data_root,
)
from mdbd.provenance import device_name
from mdbd.report import REAL_DATASETS

if TYPE_CHECKING:
    from mdbd.evaluate import EvaluationResult

#: the numbers our tables put beside the paper's F_beta and MAE: protocol 1 (SOD style), in focus positive.
HEADLINE = {"fbeta": ("sod", "max_f"), "mae": ("sod", "mae")}
BASELINE_LABELS = {"hifst": "HiFST", "lbp": "LBP", "laplacian": "Laplacian energy"}


def display_path(path: str | Path) -> str:
    """A path as it should appear in a tracked table: relative to the repository, or to $MDBD_SHARED_DATA."""
    path = Path(path).resolve()
    shared = shared_data_root()
    if shared and path.is_relative_to(shared):
        return f"${SHARED_DATA_ENV}/{path.relative_to(shared)}"
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


# -- 01 data -------------------------------------------------------------------------------------------------

def prepare_data(cfg: RunConfig, progress: bool = True) -> Path:
    """The dataset folder of `cfg`: the synthetic benchmark is generated when missing or stale; real data must exist."""
    if cfg.dataset == "synthetic":
        from mdbd.data import ensure_synthetic

        return ensure_synthetic(cfg, progress=progress)
    root = cfg.resolved_data_root()
    if not root.is_dir():
        raise DataError(f"{cfg.dataset} data not found at {root}: run `mdbd data fetch --dataset {cfg.dataset}` "
                        f"or set data_root to the folder laid out as documented in docs/data.md")
    return root


def open_split(cfg: RunConfig, split: str):
    from mdbd.data import open_dataset

    return open_dataset(cfg.dataset, cfg.resolved_data_root(), split, polarity=cfg.mask_polarity())


def data_summary(cfg: RunConfig, splits: Sequence[str] = ("train", "test")) -> pd.DataFrame:
    """Per split: pairs, mean in-focus fraction, size range."""
    from mdbd.data.readers import summarize

    rows = []
    for split in splits:
        s = summarize(open_split(cfg, split))
        rows.append({"dataset": cfg.dataset, "split": split, "pairs": s["pairs"],
                     "mean_infocus_fraction": round(s["mean_infocus_fraction"], 4),
                     "height_range": f"{s['height_range'][0]}-{s['height_range'][1]}",
                     "width_range": f"{s['width_range'][0]}-{s['width_range'][1]}", "root": display_path(s["root"])})
    return pd.DataFrame(rows)


def real_mask_statistics() -> pd.DataFrame | None:
    """Mask statistics of the real CUHK defocus set in $MDBD_SHARED_DATA (or data/cuhk), or None when absent.

    A polarity check that needs no images: after our inversion on load the in-focus fraction must be near 0.33."""
    from mdbd.data import open_dataset
    from mdbd.data.readers import summarize

    for root in (shared_data_root() and shared_data_root() / "cuhk", DATA_DIR / "cuhk"):
        if root and (root / "gt").is_dir():
            rows = []
            for split in ("train", "test"):
                s = summarize(open_dataset("cuhk", root, split))
                rows.append({"dataset": "cuhk (real masks)", "split": split, "pairs": s["pairs"],
                             "images_present": s["images_present"],
                             "mean_infocus_fraction": round(s["mean_infocus_fraction"], 4),
                             "root": display_path(root)})
            return pd.DataFrame(rows)
    return None


def sample_figure(cfg: RunConfig, split: str = "train", n: int = 8):
    from mdbd.plots import image_mask_grid

    pairs = open_split(cfg, split)
    samples = [pairs[i] for i in np.linspace(0, len(pairs) - 1, min(n, len(pairs))).astype(int)]
    return image_mask_grid([s.image for s in samples], [s.mask for s in samples], [s.id for s in samples],
                           title=f"{cfg.dataset} / {split}: images and masks (white = in focus)")


def augmented_batch_figure(cfg: RunConfig, n: int = 6, epoch: int = 0):
    """One training batch exactly as the loader produces it (flip, crop, resize, rotation)."""
    from mdbd.data import TrainDataset
    from mdbd.plots import image_mask_grid

    ds = TrainDataset(open_split(cfg, "train"), cfg.image_size, augment=True, seed=cfg.seed,
                      max_rotation_deg=cfg.max_rotation_deg, crop_scale=cfg.crop_scale)
    ds.set_epoch(epoch)
    items = [ds[i] for i in range(min(n, len(ds)))]
    images = [x.permute(1, 2, 0).numpy() for x, _ in items]
    masks = [y[0].numpy() for _, y in items]
    return image_mask_grid(images, masks, [f"#{i}" for i in range(len(items))],
                           title=f"one augmented batch at {cfg.image_size}x{cfg.image_size} (epoch {epoch}, seed {cfg.seed})")


# -- 02 training ---------------------------------------------------------------------------------------------

class LiveLossPlot:
    """A training callback that redraws the loss curve in a notebook after every epoch (no-op outside IPython)."""

    def __init__(self, title: str = ""):
        self.records: list[dict[str, Any]] = []
        self.title = title
        self._handle = None

    def __call__(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        try:
            from IPython.display import display
        except ImportError:  # pragma: no cover
            return
        import matplotlib.pyplot as plt

        from mdbd.plots import loss_curves

        fig = loss_curves(pd.DataFrame(self.records), title=self.title)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)


def train_or_resume(cfg: RunConfig, progress: bool = True, callback: Callable | None = None):
    """Train `cfg`, resuming an interrupted run of the same configuration; a finished run is returned as it is."""
    from mdbd.train import train

    return train(cfg, resume=True, progress=progress, callback=callback)


def evaluate_run(checkpoint: Path, cfg: RunConfig, split: str = "test", bootstrap: int = 1000):
    """Score a checkpoint on `cfg`'s dataset and split, all four protocols, with bootstrap intervals."""
    from mdbd.train import evaluate_checkpoint

    return evaluate_checkpoint(checkpoint, cfg.dataset, cfg.resolved_data_root(), split,
                               polarity=cfg.mask_polarity(), device=cfg.device, profile=cfg.profile, seed=cfg.seed,
                               bootstrap=bootstrap)


def headline(table: pd.DataFrame) -> pd.DataFrame:
    """F_beta (protocol 1 max F) and MAE per model, each with its 95% bootstrap interval, long format."""
    rows = []
    for metric, (protocol, name) in HEADLINE.items():
        sub = table[(table["protocol"] == protocol) & (table["metric"] == name)].copy()
        sub["metric"] = metric
        sub["protocol"] = f"{protocol}:{name}"
        rows.append(sub)
    out = pd.concat(rows, ignore_index=True)
    return out.rename(columns={"model": "method"})


def versus_references(cfg: RunConfig, checkpoint: Path, presets: Sequence[str] = ("hl",),
                      baselines: Sequence[str] = ("laplacian",), bootstrap: int = 1000,
                      ours: pd.DataFrame | None = None) -> pd.DataFrame:
    """`cfg`'s model beside other presets trained with the SAME profile and beside classical sharpness maps.

    Headline rows (F_beta = protocol 1 max F, MAE) plus `beats_all`: whether `cfg.preset` is better than every
    reference on that metric (higher F_beta, lower MAE). `ours`: the table evaluate_run already gave for `checkpoint`
    (same `bootstrap`), so that it is not evaluated twice; None evaluates it here."""
    if ours is None:
        ours = evaluate_run(checkpoint, cfg, bootstrap=bootstrap).table
    tables = [headline(ours)]
    for preset in presets:
        other = train_or_resume(cfg.replace(preset=preset), progress=False)
        tables.append(headline(evaluate_run(other.checkpoint, other.config, bootstrap=bootstrap).table))
    for result in _score_baselines(cfg, baselines, "test", protocols=("sod",), bootstrap=bootstrap, progress=False):
        tables.append(headline(result.table))
    table = pd.concat(tables, ignore_index=True)
    for metric, better in (("fbeta", max), ("mae", min)):
        sub = table[table["metric"] == metric]
        ours = sub[sub["method"] == cfg.preset]["value"].iloc[0]
        others = sub[sub["method"] != cfg.preset]["value"]
        wins = bool((ours > others).all()) if better is max else bool((ours < others).all())
        table.loc[table["metric"] == metric, "beats_all"] = wins
    return table


# -- 03 ablation ---------------------------------------------------------------------------------------------

def ablation_configs(cfg: RunConfig) -> list[RunConfig]:
    """The seven Table III presets x the profile's ablation seeds, each in its own run folder.

    Own folders even where a run repeats one of 02_train's (paper profile: same epochs): reusing 02's folder would
    silently extend a 02 run trained with an epochs override instead of training the ablation's schedule."""
    from mdbd.model import PRESETS

    epochs = cfg.ablation.epochs or cfg.epochs
    out = []
    for seed in cfg.ablation.seeds:
        for preset in PRESETS:
            run_dir = RESULTS_DIR / "runs" / cfg.profile / "ablation" / f"{preset}-{cfg.dataset_label()}-seed{seed}"
            out.append(cfg.replace(preset=preset, seed=seed, epochs=epochs, run_dir=str(run_dir)))
    return out


def run_ablation(cfg: RunConfig, progress: bool = True, bootstrap: int = 1000) -> pd.DataFrame:
    """Train (or resume) and evaluate every ablation run; one headline row per run x metric."""
    from tqdm.auto import tqdm

    rows = []
    configs = ablation_configs(cfg)
    for run_cfg in tqdm(configs, desc="ablation runs", disable=not progress):
        result = train_or_resume(run_cfg, progress=False)
        evaluation = evaluate_run(result.checkpoint, run_cfg, bootstrap=bootstrap)
        table = headline(evaluation.table)
        table["seed"] = run_cfg.seed
        table["epochs"] = run_cfg.epochs
        table["checkpoint"] = display_path(result.checkpoint)
        table["train_seconds"] = float(result.log["seconds"].sum())
        rows.append(table)
    return pd.concat(rows, ignore_index=True)


def ablation_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean (and std over seeds) per preset and metric, beside Table III's quoted numbers."""
    from mdbd.model import PRESETS
    from mdbd.report import beside_paper

    grouped = runs.groupby(["method", "metric"], sort=False)
    table = grouped.agg(value=("value", "mean"), std=("value", "std"), ci_low=("ci_low", "mean"),
                        ci_high=("ci_high", "mean"), seeds=("seed", "nunique")).reset_index()
    first = runs.drop_duplicates(["method", "metric"]).set_index(["method", "metric"])
    for col in ("dataset", "split", "protocol", "profile", "device", "weights", "epochs"):
        if col in first:
            table[col] = [first.loc[(m, k), col] for m, k in zip(table["method"], table["metric"])]
    table["seed"] = ",".join(str(s) for s in sorted(runs["seed"].unique()))
    table["table_iii_row"] = [PRESETS[m].table_label for m in table["method"]]
    table = beside_paper(table, "III", paper_dataset="dut")  # Table III was measured on DUT
    order = {name: i for i, name in enumerate(PRESETS)}
    return table.sort_values(["metric", "method"], key=lambda s: s.map(order) if s.name == "method" else s) \
        .reset_index(drop=True)


def ordering_verdict(table: pd.DataFrame) -> dict[str, Any]:
    """Does our ablation reproduce the paper's ordering of Table III?

    Checks (a) the full model is best on F_beta and on MAE, (b) every row beats the HL baseline, and (c) the Spearman
    rank correlation of our per-row values with the paper's (per metric)."""
    from scipy.stats import spearmanr

    from mdbd.report import QUOTED

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
        lines.append(f"- {metric}: best row is {v['best_row']} ({'the full model, as in the paper' if v['full_model_best'] else 'NOT the full model, unlike the paper'}); "
                     f"{v['rows_beating_hl']}/{v['of']} rows beat the HL baseline; Spearman correlation with the paper's "
                     f"ordering {v['spearman_with_paper']:.2f}")
    head = ("The paper's ordering of Table III (full model best on both metrics) IS reproduced"
            if verdict["reproduced"] else "The paper's ordering of Table III is NOT reproduced")
    where = " on the synthetic benchmark (not on DUT, where the paper measured it)" if synthetic else ""
    return f"{head}{where}.\n" + "\n".join(lines)


# -- 04 comparison -------------------------------------------------------------------------------------------

def baseline_maps(cfg: RunConfig, names: Sequence[str], split: str = "test", progress: bool = True
                  ) -> dict[str, list[np.ndarray]]:
    """Each baseline's sharpness maps (high = in focus) on a split, computed once and cached."""
    from mdbd.baselines import run_baseline

    pairs = open_split(cfg, split)
    return {name: run_baseline(name, list(pairs.image_paths), progress=progress) for name in names}


def _score_baselines(cfg: RunConfig, names: Sequence[str], split: str, *, protocols: Sequence[str],
                     bootstrap: int, progress: bool) -> list[EvaluationResult]:
    """Each baseline's maps scored against the split's ground truths, one EvaluationResult per baseline, with the
    provenance of a classical method (no weights, numpy on the CPU)."""
    from mdbd.evaluate import evaluate_maps

    pairs = open_split(cfg, split)
    gts = [pairs.load_mask(i) for i in range(len(pairs))]
    return [evaluate_maps(maps, gts, ids=list(pairs.ids), protocols=protocols, bootstrap=bootstrap, seed=cfg.seed,
                          model=BASELINE_LABELS.get(name, name), dataset=cfg.dataset, split=split,
                          weights="none (classical)", profile=cfg.profile, device="cpu (numpy)")
            for name, maps in baseline_maps(cfg, names, split, progress).items()]


def compare_methods(cfg: RunConfig, checkpoint: Path, baselines: Sequence[str] = ("hifst", "lbp", "laplacian"),
                    split: str = "test", bootstrap: int = 1000, progress: bool = True):
    """Our full model and the re-run baselines scored identically on one split (all four protocols)."""
    from mdbd.evaluate import EvaluationResult
    from mdbd.metrics import PROTOCOLS

    ours = evaluate_run(checkpoint, cfg, split, bootstrap)
    ours.table["model"] = "MultiANet (ours)"
    ours.curves["model"] = "MultiANet (ours)"
    results = [ours, *_score_baselines(cfg, baselines, split, protocols=PROTOCOLS, bootstrap=bootstrap,
                                       progress=progress)]
    return EvaluationResult(table=pd.concat([r.table for r in results], ignore_index=True),
                            curves=pd.concat([r.curves for r in results], ignore_index=True))


def table_one(comparison_table: pd.DataFrame, cfg: RunConfig) -> pd.DataFrame:
    """Table I: F_beta and MAE (protocol 1) per method on our data, beside the paper's quoted numbers for the same
    method on Shi's and DUT (quoted rows for methods we do not re-run are kept and marked)."""
    from mdbd.report import QUOTED, load_paper_tables

    ours = headline(comparison_table)
    ours["method_key"] = ours["method"].map({"MultiANet (ours)": "MultiANet", "HiFST": "HiFST", "LBP": "LBP"})
    paper = load_paper_tables("I")
    out = []
    for ds in REAL_DATASETS:
        q = paper[paper["dataset"] == ds][["method", "metric", "value"]].rename(
            columns={"method": "method_key", "value": f"{QUOTED}: {ds}"})
        out.append(q.set_index(["method_key", "metric"]))
    quoted = pd.concat(out, axis=1).reset_index()
    table = ours.merge(quoted, on=["method_key", "metric"], how="outer")
    table["method"] = table["method"].fillna(table["method_key"] + " (quoted only, not re-run)")
    for ds in REAL_DATASETS:
        table[f"difference vs {ds}"] = (table["value"] - table[f"{QUOTED}: {ds}"]).where(table["dataset"].eq(ds))
    quoted_only = table["value"].isna()
    for col in ("dataset", "split", "protocol", "profile", "device", "seed", "weights"):
        if col in table:
            table[col] = table[col].astype(object).where(~quoted_only, "n/a (quoted only)")
    table["measured_here"] = ~quoted_only
    cols = ["method", "metric", "value", "ci_low", "ci_high", f"{QUOTED}: cuhk", f"{QUOTED}: dut", "difference vs cuhk",
            "difference vs dut", "measured_here", "dataset", "split", "protocol", "profile", "device", "seed", "weights",
            "n_images"]
    table = table.sort_values(["metric", "measured_here", "method"], ascending=[True, False, True])
    return table[[c for c in cols if c in table]].reset_index(drop=True)


# -- 06 runtime ----------------------------------------------------------------------------------------------

def time_baselines(cfg: RunConfig, names: Sequence[str] = ("hifst", "lbp", "laplacian"), n_images: int = 2,
                   split: str = "test") -> pd.DataFrame:
    """Seconds per image of each baseline at the images' native size (uncached calls, median of n_images)."""
    from mdbd.baselines import BASELINES

    pairs = open_split(cfg, split)
    images = [pairs[i].image for i in range(min(n_images, len(pairs)))]
    rows = []
    for name in names:
        times = []
        for image in images:
            t0 = time.perf_counter()
            BASELINES[name](image)
            times.append(time.perf_counter() - t0)
        rows.append({"method": BASELINE_LABELS.get(name, name), "seconds_per_image": float(np.median(times)),
                     "image_size": f"{images[0].shape[1]}x{images[0].shape[0]}", "n_images": len(images),
                     "device": "cpu (numpy)"})
    return pd.DataFrame(rows)


def model_seconds_per_image(cfg: RunConfig, size: int = 320, iters: int = 5) -> float:
    """Seconds per image of the full model at `size`, batch 1, eager fp32 (the paper's Table II setting)."""
    import torch

    from mdbd.bench import median_seconds
    from mdbd.model import build_model

    dev = torch.device(cfg.device or "cpu")
    model = build_model("multianet", backbone_weights="none").to(dev).eval()
    x = torch.rand(1, 3, size, size, device=dev)
    with torch.inference_mode():
        return median_seconds(lambda: model(x), iters, 1, dev)


def table_two(model_seconds: float, baselines: pd.DataFrame, cfg: RunConfig, size: int) -> pd.DataFrame:
    from mdbd.report import QUOTED, load_paper_tables

    rows = [{"method": "MultiANet", "seconds_per_image": model_seconds, "image_size": f"{size}x{size}",
             "device": device_name(cfg.device)}]
    rows += baselines.to_dict("records")
    ours = pd.DataFrame(rows)
    paper = load_paper_tables("II")
    for ds in REAL_DATASETS:
        q = paper[paper["dataset"] == ds].set_index("method")["value"]
        ours[f"{QUOTED}: {ds} (Titan Xp / CPU)"] = ours["method"].map(q)
    return ours


# -- 07 visual -----------------------------------------------------------------------------------------------

def visual_rows(cfg: RunConfig, checkpoints: dict[str, Path], baselines: Sequence[str] = ("hifst", "lbp"),
                n: int = 4, split: str = "test") -> tuple[list[dict[str, np.ndarray]], list[str]]:
    """Rows for a Fig. 5-7 style grid: image, baselines, each checkpoint's map, ground truth."""
    from mdbd.predict import predict_arrays
    from mdbd.train import load_checkpoint

    pairs = open_split(cfg, split)
    idx = np.linspace(0, len(pairs) - 1, min(n, len(pairs))).astype(int)
    samples = [pairs[i] for i in idx]
    maps = {}
    all_baselines = baseline_maps(cfg, baselines, split, progress=False)
    for name in baselines:
        maps[BASELINE_LABELS.get(name, name)] = [all_baselines[name][i] for i in idx]
    for label, ckpt in checkpoints.items():
        model, saved, _ = load_checkpoint(ckpt, device=cfg.device)
        maps[label] = predict_arrays(model, [s.image for s in samples], int(saved["image_size"]), device=cfg.device)
    columns = ["image", *maps.keys(), "ground truth"]
    rows = []
    for k, s in enumerate(samples):
        row = {"image": s.image, "ground truth": s.mask.astype(np.float32)}
        row.update({label: values[k] for label, values in maps.items()})
        rows.append(row)
    return rows, columns
