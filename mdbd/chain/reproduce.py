"""Run the numbered notebooks in order with papermill: `mdbd reproduce --profile smoke|laptop|paper
[--dataset synthetic|cuhk|dut|folder] [--data-root DIR]`.

The dataset and its folder are passed to every notebook. Executed copies go to results/executed/<profile>/<dataset>/,
tables and figures to results/<profile>/<dataset>/ (one folder per dataset: no dataset overwrites another's). The
dataset is checked (layout, every image present and of its mask's size) before the first notebook starts; the runner
stops at the first failing notebook, naming it and the cell, and ends by writing the folder's report (REPORT.md and
report.html, mdbd.chain.report_md) and listing every table and figure the chain wrote.

While it runs it shows (on stderr; `--quiet`: not at all) each notebook with its expected time per profile
(mdbd.chain.notebook.NOTEBOOK_INFO), each code cell as it starts with its section, and each notebook's measured time
beside the expected one, and the steps of every training with an estimate of the time left (ChainProgress, fed by the
trainings through mdbd.core.progress_feed). The kernels talk to the runner over IPC, not TCP (kernel_transport_config),
so ipykernel's "Kernel is running over TCP without encryption" warning has no cause to be printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mdbd.core.paths
import mdbd.chain.stages.data
from mdbd.runs.config import PROFILES, RunConfig, load_config
from mdbd.core.errors import ConfigError, MdbdError
from mdbd.chain.notebook import NOTEBOOK_INFO, expected_minutes, notebooks_in_role
from mdbd.core.paths import NOTEBOOKS_DIR
from mdbd.core.progress_feed import FeedReader, PROGRESS_FILE_ENV, describe_event
from mdbd.evaluation.report import results_dir
from mdbd.chain.report_md import write_report
from mdbd.chain.stages.ablation import model_variant

#: the chain `mdbd reproduce` runs by default, in order; the notebooks run after it with `--extras` (08: its HiFST/LBP
#: maps of images outside the test split cost minutes for a table that does not involve our model); those run by
#: name only (`--only`; 09 trains a sweep of held-out runs). One registry: mdbd.chain.notebook.NOTEBOOK_INFO.
NOTEBOOKS = notebooks_in_role("chain")
EXTRA_NOTEBOOKS = notebooks_in_role("extra")
BY_NAME_NOTEBOOKS = notebooks_in_role("by_name")
ALL_NOTEBOOKS = NOTEBOOKS + EXTRA_NOTEBOOKS + BY_NAME_NOTEBOOKS


class ChainProgress:
    """What `mdbd reproduce` shows while the chain runs (`--quiet`: nothing): each notebook as it starts, with its
    expected time (mdbd.chain.notebook.NOTEBOOK_INFO); each code cell as it starts, with the section (the last Markdown
    heading above it) and its first line; each notebook's measured time beside the expected one as it ends.

    On a terminal the cells are one tqdm bar per notebook (elapsed time and cell rate); elsewhere (a batch log, a
    pipe) one line per cell, so that a log shows where a run was when it stopped. Trainings (`watch_training`): a
    line per run when it starts, at each epoch's end and every TRAINING_LINE_S seconds between, with the step and the
    time left; on a terminal the bar also shows the latest."""

    PREFIX = "[mdbd reproduce]"
    #: seconds between two looks at the trainings' feed, and between two lines of one training within an epoch
    TRAINING_POLL_S = 2.0
    TRAINING_LINE_S = 60.0

    def __init__(self, profile: str, dataset: str = "synthetic", stream=None, bar: bool | None = None):
        self.profile, self.dataset = profile, dataset
        self.stream = stream if stream is not None else sys.stderr
        self.bar = bool(getattr(self.stream, "isatty", lambda: False)()) if bar is None else bar
        self._name, self._cells, self._pbar = "", {}, None
        self._reader: FeedReader | None = None
        self._shown: dict[str, tuple[tuple, float]] = {}  # run -> ((epoch, finished) last shown, when)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _print(self, text: str) -> None:
        if self._pbar is not None:
            self._pbar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def expected(self, name: str) -> str:
        minutes = expected_minutes(name, self.profile, self.dataset)
        if minutes is None:
            return f"no expected time for profile {self.profile}"
        where = ""
        if self.dataset == "cuhk" and self.profile == "laptop" and NOTEBOOK_INFO[name].cuhk_minutes:
            where = " on CUHK (a first run: the baselines' maps computed)" if name == "04_comparison" else " on CUHK"
        return f"expected ~{minutes:g} min{where}"

    def notebook_start(self, name: str, position: int, total: int) -> None:
        self._name, self._cells = name, {}
        self._print(f"{self.PREFIX} {name} ({position}/{total}, profile {self.profile}; {self.expected(name)}) ...")

    def on_notebook_start(self, notebook, **_) -> None:
        """nbclient hook: the parameterised notebook, before its first cell; numbers its code cells and finds the
        section of each."""
        heading, cells = "", {}
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type == "markdown":
                titles = [line.lstrip("#").strip() for line in cell.source.splitlines() if line.startswith("#")]
                heading = titles[-1] if titles else heading
            elif cell.cell_type == "code" and cell.source.strip():
                first = next((line.strip() for line in cell.source.splitlines()
                              if line.strip() and not line.lstrip().startswith("#")),
                             cell.source.strip().splitlines()[0])
                tags = cell.metadata.get("tags", [])
                if "injected-parameters" in tags or "parameters" in tags:  # papermill's, then the notebook's defaults
                    kind = "injected" if "injected-parameters" in tags else "default"
                    first = f"{kind} parameters: {first}"
                cells[index] = (len(cells) + 1, heading, first)
        self._cells = cells
        if self.bar:
            from tqdm import tqdm

            self._pbar = tqdm(total=len(cells), desc=self._name, unit="cell", file=self.stream, leave=False,
                              dynamic_ncols=True)

    def on_cell_start(self, cell, cell_index, **_) -> None:
        """nbclient hook: a cell is about to run (markdown and empty cells are skipped)."""
        if cell_index not in self._cells:
            return
        number, heading, first = self._cells[cell_index]
        where = " | ".join(part for part in (heading, first) if part)
        if self._pbar is not None:
            self._pbar.n = number - 1
            self._pbar.set_postfix_str(where[:60], refresh=True)
        else:
            self._print(f"{self.PREFIX}   {self._name} cell {number}/{len(self._cells)}: {where[:100]}")

    def notebook_end(self, name: str, seconds: float) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        minutes = expected_minutes(name, self.profile, self.dataset)
        ratio = f", {seconds / 60 / minutes:.1f}x the expected" if minutes and seconds > 120 * minutes else ""
        self._print(f"{self.PREFIX} {name} done in {seconds:.0f} s ({seconds / 60:.1f} min; "
                    f"{self.expected(name)}{ratio})")

    def hooks(self) -> dict:
        """The nbclient hooks to give papermill's engine."""
        return {"on_notebook_start": self.on_notebook_start, "on_cell_start": self.on_cell_start}

    def watch_training(self, feed: Path) -> None:
        """Follow the trainings' feed file (mdbd.core.progress_feed) in a background thread until `close()`."""
        self._reader = FeedReader(Path(feed))
        self._thread = threading.Thread(target=self._follow, name="mdbd-training-progress", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.wait(self.TRAINING_POLL_S):
            self.show_training()

    def show_training(self, now: float | None = None) -> list[str]:
        """One look at the feed: the lines due now (printed, and returned for tests)."""
        if self._reader is None:
            return []
        now = time.monotonic() if now is None else now
        lines, latest = [], None
        for run, event in self._reader.poll().items():
            state = (event["epoch"], bool(event.get("finished")))
            shown = self._shown.get(run)
            if shown is None or shown[0] != state or (not state[1] and now - shown[1] >= self.TRAINING_LINE_S):
                self._shown[run] = (state, now)
                done = " (trained)" if state[1] else ""
                lines.append(f"{self.PREFIX}   training {describe_event(event)}{done}")
            if not state[1]:
                latest = event
        for line in lines:
            self._print(line)
        if self._pbar is not None and latest is not None:
            self._pbar.set_postfix_str(describe_event(latest)[-60:], refresh=True)
        return lines

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
            self.show_training()  # the last epochs' lines
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None


def kernel_transport_config():
    """The Jupyter configuration the chain's kernels start with: IPC transport (a Unix socket in a private temporary
    folder) instead of TCP on localhost. Over TCP without CurveZMQ keys ipykernel >= 7 logs "Kernel is running over
    TCP without encryption ..." (ipykernel/kernelapp.py, init_sockets) to the kernel's stderr, which is the user's
    terminal: with IPC the warning's condition is false and nothing listens on a port. Returns (config, folder to
    remove afterwards); on Windows (no IPC in ZeroMQ there) (None, None): TCP, and its warning, as before."""
    import tempfile

    if os.name == "nt":
        return None, None
    from traitlets.config import Config

    folder = Path(tempfile.mkdtemp(prefix="mdbd-kernel-"))
    return Config({"KernelManager": {"transport": "ipc", "ip": str(folder / "kernel")}}), folder


class NotebookFailed(MdbdError):
    """A notebook of the chain raised; the message names the notebook, the cell and the error."""


@dataclass
class ChainResult:
    profile: str
    dataset: str = "synthetic"
    executed: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)
    report: object = None  # mdbd.chain.report_md.ReportResult, once the chain has run


def notebook_path(name: str) -> Path:
    path = NOTEBOOKS_DIR / f"{name}.ipynb"
    if not path.is_file():
        raise ConfigError(f"notebook {path} does not exist; the notebooks are {', '.join(ALL_NOTEBOOKS)}")
    return path


def chain_config(profile: str, dataset: str = "synthetic", data_root: str | None = None) -> RunConfig:
    """The configuration every notebook of the chain starts from (a ConfigError for a bad profile or dataset)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return load_config(profile, dataset=dataset, data_root=data_root)


def declared_parameters(name: str) -> set[str]:
    """The names assigned in a notebook's tagged parameters cell."""
    import ast

    import nbformat

    book = nbformat.read(notebook_path(name), as_version=4)
    cells = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    names: set[str] = set()
    for cell in cells:
        names |= {t.id for stmt in ast.parse(cell.source).body if isinstance(stmt, ast.Assign)
                  for t in stmt.targets if isinstance(t, ast.Name)}
    return names


#: image outputs of the executed copies: every figure is also saved on its own under results/<profile>/<dataset>/
#: figures (PNG + provenance), so a copy keeps only the small ones (curves, bar charts: a reader on a Git host sees
#: them inline) and drops the large ones (image grids), PDFs and JPEGs: the tracked tree must stay within the budget
#: of results/ (docs/results.md: it travels to a GPU machine within 64 MiB, the real-data carry included)
EMBEDDED_IMAGES = ("image/png", "image/jpeg", "application/pdf")
#: the largest embedded PNG kept (base64 characters, ~110 KB of PNG): the study's curves and bar charts are below it at
#: the notebooks' inline resolution, its image grids above
SMALL_FIGURE_CHARS = 150_000


def drop_embedded_images(path: Path, keep_below: int = SMALL_FIGURE_CHARS) -> None:
    """Remove the large embedded images (and every PDF and JPEG) from an executed notebook, in place; PNGs smaller
    than `keep_below` base64 characters stay, and so do the text outputs (a figure's repr included), so that nbval
    still compares them with a live run."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            for key in EMBEDDED_IMAGES:
                if key in data and not (key == "image/png" and len(data[key]) < keep_below):
                    data.pop(key)
    nbformat.write(nb, path)


def params_folder(params: dict) -> str:
    """The subfolder of a run's executed copies for further notebook parameters ("" for none), as the tables name
    the variant: {"attention_scale": "none", "spatial_gate": "sigmoid"} gives "attention-none_gate-sigmoid" (03's
    suffix, mdbd.chain.stages.ablation.model_variant); any other parameter adds "_<name>-<value>", a list its items
    joined by "+" ("none" when empty: 09's candidates=[] gives "candidates-none")."""
    def label(value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return "+".join(map(str, value)) or "none"
        return str(value)

    _, suffix = model_variant(params.get("attention_scale"), params.get("spatial_gate"))
    others = "".join(f"_{k}-{label(params[k])}" for k in sorted(params) if k not in ("attention_scale", "spatial_gate"))
    return (suffix + others).lstrip("_")


def executed_dir(profile: str, label: str, params: dict | None = None) -> Path:
    """results/executed/<profile>/<dataset label>/, plus params_folder(params) when notebook parameters are given:
    a run with other parameters (03 with eq. 1 and eq. 3 literally) never overwrites the default run's copies."""
    base = mdbd.core.paths.results_dir() / "executed" / profile / label  # $MDBD_RESULTS_DIR as it is now
    return base / params_folder(params) if params else base


def run_chain(profile: str = "laptop", notebooks: tuple[str, ...] | list[str] | None = None, *,
              dataset: str = "synthetic", data_root: str | None = None, out_dir: Path | None = None,
              params: dict | None = None, prepare_only: bool = False, progress: bool | ChainProgress = True,
              extras: bool = False, progress_stream=None) -> ChainResult:
    """Execute (or, with `prepare_only`, only parameterise) the chain for `profile` on `dataset` (at `data_root`;
    None: the dataset's default folder): `notebooks` (None: NOTEBOOKS, followed by EXTRA_NOTEBOOKS with `extras`).
    `params`: further notebook parameters, each given to the notebooks whose parameters cell declares it (a name no
    selected notebook declares is a ConfigError). Bad data is reported before the first notebook runs.
    `progress`: True shows ChainProgress on `progress_stream` (default stderr), False nothing (`--quiet`), or a
    ChainProgress of the caller's."""
    cfg = chain_config(profile, dataset, data_root)
    names = list(notebooks or (NOTEBOOKS + EXTRA_NOTEBOOKS if extras else NOTEBOOKS))
    params = dict(params or {})
    declared = _declared_parameters(names, params)
    if not prepare_only:
        mdbd.chain.stages.data.check_dataset(cfg)  # read when called: a test stubs the check
    label = cfg.results_label()
    out_dir = Path(out_dir) if out_dir else executed_dir(profile, label, params)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    result = ChainResult(profile=profile, dataset=label)
    # data_root as a parameter (absolute, or relative to the repository root: mdbd.core.paths); notebooks resolve it so
    parameters = {"profile": profile, "dataset": dataset, "data_root": data_root}
    if progress is True:
        progress = ChainProgress(profile, dataset, stream=progress_stream)
    with _kernel_session(progress, prepare_only) as engine:
        for position, name in enumerate(names, 1):
            target = out_dir / f"{name}.ipynb"
            if progress:
                progress.notebook_start(name, position, len(names))
            t0 = time.time()
            own = {**parameters, **{k: v for k, v in params.items() if k in declared[name]}}
            hooks = progress.hooks() if progress and not prepare_only else {}
            _execute_notebook(name, target, own, prepare_only, {**engine, **hooks})
            result.executed.append(target)
            result.seconds[name] = time.time() - t0
            if progress:
                progress.notebook_end(name, result.seconds[name])
    if not prepare_only:
        result.outputs = sorted(p for p in results_dir(profile, label).rglob("*")
                                if p.is_file() and p.suffix in (".csv", ".md", ".png", ".pdf")
                                and p.stat().st_mtime >= started - 1 and "executed" not in p.parts)
        if results_dir(profile, label).is_dir():  # a notebook run by name may write no table
            result.report = write_report(profile, label)
    return result


def _declared_parameters(names: list[str], params: dict) -> dict[str, set]:
    """The parameters each of `names` declares; a ConfigError for an unknown notebook or a parameter none declares."""
    unknown = [n for n in names if n not in ALL_NOTEBOOKS]
    if unknown:
        raise ConfigError(f"unknown notebook(s) {unknown}; the notebooks are {', '.join(ALL_NOTEBOOKS)}")
    declared = {name: declared_parameters(name) for name in names}
    undeclared = sorted(k for k in params if not any(k in d for d in declared.values()))
    if undeclared:
        raise ConfigError(f"notebook parameter(s) {undeclared} are declared by none of {', '.join(names)}")
    return declared


@contextlib.contextmanager
def _kernel_session(progress, prepare_only: bool):
    """The papermill engine options the chain's kernels run with (IPC transport, kernel_transport_config), and,
    while they run, the trainings' progress feed: $MDBD_PROGRESS_FILE in the kernels' private folder, which the
    kernels and their training workers inherit, followed by `progress` (mdbd.core.progress_feed)."""
    config, folder = (None, None) if prepare_only else kernel_transport_config()
    before = os.environ.get(PROGRESS_FILE_ENV)
    try:
        if folder is not None and progress:
            os.environ[PROGRESS_FILE_ENV] = str(folder / "training-progress.jsonl")
            progress.watch_training(folder / "training-progress.jsonl")
        yield {} if config is None else {"config": config}
    finally:
        if progress:
            progress.close()
        if before is None:
            os.environ.pop(PROGRESS_FILE_ENV, None)
        else:
            os.environ[PROGRESS_FILE_ENV] = before
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _execute_notebook(name: str, target: Path, parameters: dict, prepare_only: bool, engine: dict) -> None:
    """Run (or parameterise) notebook `name` into `target`; NotebookFailed names the cell when it raises."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    try:
        pm.execute_notebook(str(notebook_path(name)), str(target), parameters=parameters, prepare_only=prepare_only,
                            cwd=str(NOTEBOOKS_DIR), progress_bar=False,
                            log_output=False, stdout_file=None, stderr_file=None, **engine)
    except PapermillExecutionError as exc:
        raise NotebookFailed(
            f"notebook {name}.ipynb failed in cell {exc.cell_index} (execution count {exc.exec_count}): "
            f"{exc.ename}: {exc.evalue}\n  executed copy with the traceback: {target}") from None
    if not prepare_only:
        drop_embedded_images(target)


def print_summary(result: ChainResult, stream=None) -> None:
    stream = stream if stream is not None else sys.stdout  # looked up at call time (pytest's capsys replaces it)
    total = sum(result.seconds.values())
    print(f"\nmdbd reproduce --profile {result.profile} ({result.dataset}): {len(result.executed)} notebooks in "
          f"{total / 60:.1f} min", file=stream)
    for name, sec in result.seconds.items():
        print(f"  {name:<14} {sec:7.1f} s", file=stream)
    print("Executed notebooks:", file=stream)
    for p in result.executed:
        print(f"  {p}", file=stream)
    tables = [p for p in result.outputs if p.suffix in (".csv", ".md")]
    figures = [p for p in result.outputs if p.suffix in (".png", ".pdf")]
    print(f"Tables ({len(tables)}):", file=stream)
    for p in tables:
        print(f"  {p}", file=stream)
    print(f"Figures ({len(figures)}):", file=stream)
    for p in figures:
        print(f"  {p}", file=stream)
    if result.report is not None:
        print(f"Report: {result.report.markdown}\n        {result.report.html}", file=stream)
        for path in result.report.missing:
            print(f"  MISSING (in the report's plan, not on disk): {path}", file=stream)
