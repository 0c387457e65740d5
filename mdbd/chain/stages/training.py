"""02 training: train (or resume) one preset with a live loss plot, and set it beside the HL baseline trained with
the same profile and beside a classical sharpness map."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from mdbd.runs.config import RunConfig
from mdbd.core.provenance import resolve_device
from mdbd.runs.parallel import Background, Job, threads_per_run
from mdbd.evaluation.plots import loss_curves
from mdbd.chain.stages.common import HEADLINE_PROTOCOLS, evaluate_run, evaluate_runs, headline, score_baselines
from mdbd.core.threads import torch_threads
from mdbd.runs.train import train


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

        fig = loss_curves(pd.DataFrame(self.records), title=self.title)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)


def train_or_resume(cfg: RunConfig, progress: bool = True, callback: Callable | None = None,
                    threads: int | None = None):
    """Train `cfg`, resuming an interrupted run of the same identity; a finished one is returned as it is. Prints
    one line saying which of the three happened, and where (TrainResult.describe). `threads`: CPU threads for
    this run (None: as they are)."""
    with torch_threads(threads):
        result = train(cfg, resume=True, progress=progress, callback=callback)
    print(result.describe(), flush=True)
    return result


def start_references(cfg: RunConfig, presets: Sequence[str], bootstrap: int = 1000):
    """With `cfg.concurrent_runs` > 1, the reference presets (same profile) start training and scoring in worker
    processes now, to run beside `cfg`'s own training (mdbd.runs.parallel.Background); returns it with the CPU threads
    left for `cfg`'s run, or (None, None) when they are to train one after another (versus_references trains
    them). Scores land in the runs' score cache, so versus_references reads them without predicting again."""
    presets = [p for p in presets if p != cfg.preset]
    if cfg.concurrent_runs <= 1 or not presets:
        return None, None
    concurrent = min(cfg.concurrent_runs, len(presets) + 1)
    threads = threads_per_run(resolve_device(cfg.device), concurrent)
    # the references' rows are headline only (here and in Table III): no structure metrics (EXTENDED_METRICS)
    jobs = [Job(cfg.replace(preset=p), bootstrap=bootstrap, label=f"{p} (reference)", extended=False)
            for p in presets]
    print(f"training {', '.join(presets)} beside {cfg.preset} ({threads or 'default'} CPU thread(s) each)", flush=True)
    return Background(jobs, threads=threads), threads


def versus_references(cfg: RunConfig, checkpoint: Path, presets: Sequence[str] = ("hl",),
                      baselines: Sequence[str] = ("laplacian",), bootstrap: int = 1000,
                      ours: pd.DataFrame | None = None, background=None) -> pd.DataFrame:
    """`cfg`'s model beside other presets trained with the SAME profile and beside classical sharpness maps.

    Headline rows (F_beta and MAE as HEADLINE reads them) plus `beats_all`: whether `cfg.preset` is better than every
    reference on that metric (higher F_beta, lower MAE). `ours`: the table evaluate_run already gave for `checkpoint`
    (same `bootstrap`), so that it is not evaluated twice; None evaluates it here. `background`: the references'
    runs started by start_references, waited for here (their finished runs are then reused)."""
    if background is not None:
        background.wait()
    if ours is None:
        ours = evaluate_run(checkpoint, cfg, bootstrap=bootstrap).table
    tables = [headline(ours)]
    for preset in presets:
        other = train_or_resume(cfg.replace(preset=preset), progress=False)
        scores = evaluate_runs([(other.checkpoint, other.config)], bootstrap=bootstrap, extended=False)[0]
        tables.append(headline(scores.table))
    for result in score_baselines(cfg, baselines, "test", protocols=HEADLINE_PROTOCOLS, bootstrap=bootstrap,
                                  progress=False):
        tables.append(headline(result.table))
    table = pd.concat(tables, ignore_index=True)
    for metric, better in (("fbeta", max), ("mae", min)):
        sub = table[table["metric"] == metric]
        ours = sub[sub["method"] == cfg.preset]["value"].iloc[0]
        others = sub[sub["method"] != cfg.preset]["value"]
        wins = bool((ours > others).all()) if better is max else bool((ours < others).all())
        table.loc[table["metric"] == metric, "beats_all"] = wins
    return table
