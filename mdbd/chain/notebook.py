"""The few lines every numbered notebook starts with, kept here so that notebooks stay thin and tested.

    ctx = start("02_train", profile=profile, seed=seed, device=device)

resolves `device = None` to cuda or cpu, loads the run profile, fixes the seed, shows tables with 4 decimals, and prints
what the notebook needs from the earlier ones and how long it takes per profile.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mdbd.runs.config import RunConfig, load_config
from mdbd.core.errors import ConfigError
from mdbd.core.paths import REPO_ROOT
from mdbd.core.provenance import device_name, resolve_device
from mdbd.evaluation.report import results_dir, save_figure, save_table, table_path
from mdbd.runs.rundir import RunDir
from mdbd.chain.stages.common import display_path
from mdbd.runs.train import seed_everything

#: where a notebook runs: in the default chain (in the registry's order), after it with `--extras`, or by name only
ROLES = ("chain", "extra", "by_name")


@dataclass(frozen=True)
class NotebookInfo:
    """One numbered notebook in the registry (NOTEBOOK_INFO, in chain order): where it runs (`role`, ROLES), the
    library module whose stage it runs (`stage`), what it needs and how long it takes.

    ``minutes``: the expected minutes per profile on the synthetic benchmark (smoke and laptop on a 2-core CPU, paper
    on one GPU), the numbers `mdbd reproduce` sets beside each notebook's measured time; ``cuhk_minutes``: its
    first run on CUHK at the laptop profile, where that differs (longer trainings; maps computed, then cached).
    CPU times as measured on the slower of the 2-core machine types (docs/results.md, "Time"). ``typical``: the same
    times as the notebook prints them at its start, with their context; kept verbatim because the executed notebooks
    and their nbval references carry that line (tests/test_reproduce.py checks that its numbers are ``minutes``')."""

    needs: str
    typical: str
    minutes: dict[str, float]
    cuhk_minutes: float | None = None
    role: str = "chain"
    stage: str = ""


def _every(value: float) -> dict[str, float]:
    return {profile: value for profile in ("smoke", "laptop", "paper")}


NOTEBOOK_INFO: dict[str, NotebookInfo] = {
    "01_data": NotebookInfo(
        "nothing (generates the synthetic benchmark; real data only if you point `data_root` at it)",
        "smoke < 0.5 min, laptop ~ 0.5 min, paper ~ 1.5 min", {"smoke": 0.5, "laptop": 0.5, "paper": 1.5},
        stage="mdbd.chain.stages.data"),
    "02_train": NotebookInfo(
        "01_data (the dataset folder)",
        "smoke < 0.5 min, laptop ~ 4 min (on CUHK ~ 14 min), paper ~ 6 min on an H200 (two trainings; one measured "
        "2.5 min)", {"smoke": 0.5, "laptop": 4, "paper": 6}, cuhk_minutes=14, stage="mdbd.chain.stages.training"),
    "03_ablation": NotebookInfo(
        "01_data", "smoke ~ 1 min, laptop ~ 6 min (on CUHK ~ 21 min), paper ~ 21 runs x ~2.5 min ~ 1 h on an H200",
        {"smoke": 1, "laptop": 6, "paper": 60}, cuhk_minutes=21, stage="mdbd.chain.stages.ablation"),
    "04_comparison": NotebookInfo(
        "02_train (the full model's checkpoint); on CUHK also DBDF's published maps (optional)",
        "smoke ~ 0.5 min, laptop ~ 1 min, paper ~ 30 min (HiFST); on CUHK the first run computes HiFST "
        "and LBP on the 100 test images (~ 10 min on 2 cores), seconds once cached",
        {"smoke": 0.5, "laptop": 1, "paper": 30}, cuhk_minutes=10, stage="mdbd.chain.stages.comparison"),
    "05_curves": NotebookInfo("04_comparison (its curves CSV)", "under a minute for every profile", _every(1),
                              stage="mdbd.chain.stages.common"),
    "06_runtime": NotebookInfo(
        "nothing (times the model on random input; baselines on the test images)",
        "smoke ~ 0.5 min, laptop ~ 0.5 min, paper ~ 5 min", {"smoke": 0.5, "laptop": 0.5, "paper": 5},
        stage="mdbd.chain.stages.runtime"),
    "07_visual": NotebookInfo("03_ablation and 04_comparison (checkpoints and baseline maps)",
                              "under a minute for every profile", _every(1), stage="mdbd.chain.stages.visual"),
    "08_cuhk_te1": NotebookInfo(
        "nothing but Zhao's 100 CUHK images (outside the default chain; DBDF's published maps optional)",
        "seconds off CUHK (not available); on CUHK ~ 10 min on 2 cores for the HiFST/LBP maps of the 80 "
        "images outside the test split, seconds once cached", _every(0.5), cuhk_minutes=10, role="extra",
        stage="mdbd.chain.stages.cuhk_te1"),
    "09_fidelity": NotebookInfo(
        "nothing but Shi's training images (outside the default chain)",
        "seconds off CUHK (not available); on CUHK ~ 45 min on 2 cores for the fidelity sweep's default "
        "candidates, seconds once trained", _every(0.5), cuhk_minutes=45, role="by_name", stage="mdbd.runs.sweep"),
}


def notebooks_in_role(role: str) -> tuple[str, ...]:
    """The notebooks of `role` (ROLES), in the registry's order."""
    if role not in ROLES:
        raise ConfigError(f"unknown notebook role {role!r}; roles: {', '.join(ROLES)}")
    return tuple(name for name, info in NOTEBOOK_INFO.items() if info.role == role)


def expected_minutes(name: str, profile: str, dataset: str = "synthetic") -> float | None:
    """The expected minutes of notebook `name` under `profile` (on CUHK at the laptop profile: `cuhk_minutes`);
    None for an unknown notebook or profile."""
    info = NOTEBOOK_INFO.get(name)
    if info is None:
        return None
    if dataset == "cuhk" and profile == "laptop" and info.cuhk_minutes is not None:
        return info.cuhk_minutes
    return info.minutes.get(profile)


@dataclass
class NotebookContext:
    name: str
    profile: str
    cfg: RunConfig
    device: str
    device_name: str
    seed: int

    @property
    def results(self) -> Path:
        """results/<profile>/<dataset>/: this notebook's tables and figures."""
        return results_dir(self.profile, self.cfg.results_label())

    def save_table(self, df, name: str, *, title: str, provenance: dict, **kwargs) -> dict[str, Path]:
        """mdbd.evaluation.report.save_table into this notebook's results folder."""
        return save_table(df, name, profile=self.profile, dataset=self.cfg.results_label(), title=title,
                          provenance=provenance, **kwargs)

    def save_figure(self, fig, name: str, *, provenance: dict) -> dict[str, Path]:
        """mdbd.evaluation.report.save_figure into this notebook's results folder."""
        return save_figure(fig, name, profile=self.profile, dataset=self.cfg.results_label(), provenance=provenance)

    def checkpoints(self, configs: dict[str, RunConfig], made_by: str) -> dict[str, Path]:
        """The checkpoints of upstream runs, by label: each configuration's run folder (its identity) holds the one
        that notebook `made_by` trained. A ConfigError lists every missing one and names the notebook to run first."""
        paths = {label: RunDir.of(cfg).checkpoint for label, cfg in configs.items()}
        missing = [display_path(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise ConfigError(f"missing checkpoint(s) {', '.join(missing)}: run {made_by} with "
                              f"profile={self.profile!r} (dataset {self.cfg.dataset!r}) first")
        return paths

    def checkpoint(self, cfg: RunConfig | None = None, made_by: str = "02_train") -> Path:
        """checkpoints() for one run: `cfg`'s (default: this notebook's own configuration, the run 02 trains)."""
        return self.checkpoints({"run": cfg or self.cfg}, made_by)["run"]

    def upstream_table(self, name: str) -> pd.DataFrame:
        """A table an earlier notebook wrote into this results folder; that notebook is the one whose number the
        table's name starts with (every table is named after its notebook). A ConfigError names it when missing."""
        path = table_path(name, self.profile, self.cfg.results_label())
        if not path.is_file():
            maker = next((n for n in NOTEBOOK_INFO if name.startswith(n[:3])), "the notebook that writes it")
            raise ConfigError(f"{display_path(path)} is missing: run {maker} with profile={self.profile!r} "
                              f"(dataset {self.cfg.dataset!r}) first")
        return pd.read_csv(path)

    def provenance(self, **extra) -> dict:
        """The provenance fields every table and figure of this notebook carries."""
        return {"profile": self.profile, "device": self.device_name, "seed": self.seed,
                "weights": self.cfg.backbone_weights, "data_root": display_path(self.cfg.resolved_data_root()),
                "notebook": self.name, **extra}


def _quiet_and_rounded_display() -> None:
    import pandas as pd

    # tables shown with 4 decimals (the CSVs keep full precision): what a reader needs, and what the nbval references
    # compare, so that a last-digit wobble of a CPU kernel does not fail the comparison
    pd.set_option("display.precision", 4)
    # matplotlib warns when placing a legend took long, i.e. on a busy machine only: noise, and an output that would
    # differ from run to run
    warnings.filterwarnings("ignore", message='Creating legend with loc="best" can be slow')


def start(name: str, *, profile: str, seed: int = 0, device: str | None = None, **overrides) -> NotebookContext:
    if name not in NOTEBOOK_INFO:
        raise ConfigError(f"unknown notebook {name!r}")
    resolved = resolve_device(device)

    cfg = load_config(profile, seed=seed, device=resolved, **overrides)
    seed_everything(seed)
    _quiet_and_rounded_display()
    needs, minutes = NOTEBOOK_INFO[name].needs, NOTEBOOK_INFO[name].typical
    ctx = NotebookContext(name=name, profile=profile, cfg=cfg, device=resolved, device_name=device_name(resolved),
                          seed=seed)
    results = ctx.results.relative_to(REPO_ROOT) if ctx.results.is_relative_to(REPO_ROOT) else ctx.results
    print(f"{name} | profile {profile} | device {ctx.device_name} | seed {seed}")
    print(f"needs: {needs}\ntypical time: {minutes}\nresults: {results}")
    return ctx
