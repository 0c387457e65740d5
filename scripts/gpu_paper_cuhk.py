#!/usr/bin/env python3
"""The paper profile on real Shi's (CUHK) in one call of at most 10 minutes on a lent GPU machine (issue #12).

It trains MultiANet, the HL baseline and the other Table III presets with the paper profile (320x320, batch 6,
Adam 4e-4, the whole VGG-16, 60 epochs) on the 604 real training images of a carry, several runs at once
(mdbd.runs.parallel: processes sharing the GPU), scores every run on the 100 real test images at the ground truth's size
under every protocol (the headline: mdbd.chain.stages.common.HEADLINE, protocol 1), and writes Table I's and Table III's
rows with their provenance to results/<profile>/cuhk/tables/gpu_*.csv|md (and a copy under $OUT), with the time of
every stage. Before training it measures which way of sharing the GPU pays (mdbd.bench.concurrency: sequential,
processes, threads on CUDA streams, CUDA graphs on streams; and processes under MPS when the machine has it, which
it then keeps for the training if it is faster). A deadline stops everything cleanly: runs still training are
stopped and scored at their last checkpoint (every 5 epochs), marked with the epochs they reached.
No registry, papermill or PySODMetrics is needed there: only PyTorch and what the machine has (KINDS.md).

PREPARE (here, on the CPU machine; commit first, so that the code version recorded is a commit):
    .venv/bin/python scripts/gpu_paper_cuhk.py prepare --cuhk-root $MDBD_SHARED_DATA/cuhk-full
  writes data/gpu/ (git-ignored): cuhk-carry/ (the carry, ~20 MiB at JPEG q85: mdbd data carry), vgg16_oxford_fp16.pth
  (28.1 MiB: mdbd weights export --dtype float16) and code_stamp.json (the commit and a digest of the source), and
  checks that the working tree plus data/gpu stay under the 64 MiB that travel (it prints the total; docs/data.md,
  "Carry").

RUN (the device tool, one call):
    run(command="bash scripts/gpu_paper_cuhk.sh", carry=["data/gpu"], timeout_s=600)
  The script stops itself after 570 s (--seconds); the wrapper's `timeout` is the backstop. Its files come back
  from $OUT (at most 8): summary.md, provenance.json, log.txt and results.tar.gz (the tables, forms.csv, timings,
  every run's log.csv/job.log/config.yaml); they land under the reply's files_at. Unpack the tarball at the
  repository root: `tar -xzf FILES_AT/results.tar.gz` (it holds results/paper/cuhk/...).

On CPU it runs unchanged at tiny sizes (tests/test_gpu_script.py): e.g.
    python scripts/gpu_paper_cuhk.py run --profile smoke --carry DIR --weights none --presets multianet hl \\
        --set image_size=32 epochs=1 --bootstrap 20 --forms sequential threads --out /tmp/out

THE PAPERMILL ROUTE (`mdbd reproduce --profile paper --dataset cuhk` on the machine): papermill and what it needs
beyond the machine's packages are 30 wheels, 4.3 MiB (14.3 MiB with the optional debugpy and jedi):
scripts/papermill_wheels.txt lists them, `bash scripts/fetch_papermill_wheels.sh` downloads them into .whl/, and
there `python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site
.whl/*.whl && export PYTHONPATH=/tmp/site` installs them. They fit beside the carry and the weights only without
the optional two (with the q92 carry of 2026-12-05 they did not: 6.5 + 54.2 + 4.3 = 65.0 MiB; the q85 carry saves 6.5).
What stops it is time, not size: the chain's paper profile is 01 (~1.5 min) + 02 (~5 min: two trainings) + 03
(21 runs) + 04 (HiFST on 100 full-size images, ~30 min) + 06; in one 10-minute call at most 01 and 02 fit, and a
session has 15 minutes of device time in all. So this script runs the notebooks' library calls (mdbd.chain.stages)
instead; docs/training.md has the details.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

GPU_DIR = Path("data/gpu")
CARRY = GPU_DIR / "cuhk-carry"
WEIGHTS = GPU_DIR / "vgg16_oxford_fp16.pth"
STAMP = GPU_DIR / "code_stamp.json"
TRAVEL_LIMIT = 64 * 2**20
#: Table I's pair first: when time runs short, they are the runs that must finish; then Table III's other presets
TABLE_I_FIRST = ("multianet", "hl")
SOURCE_PARTS = ("mdbd", "scripts", "pyproject.toml")
SOURCE_SUFFIXES = (".py", ".yaml", ".csv", ".json", ".sh", ".txt", ".toml")


# -- code and size provenance --------------------------------------------------------------------------------

def source_digest(root: Path = REPO) -> str:
    """sha256 over the library's and scripts' files (names and bytes): the same on both machines for the same code,
    whatever git says there (the device's copy of the tree reports the session's starting commit)."""
    digest = hashlib.sha256()
    files = []
    for part in SOURCE_PARTS:
        path = root / part
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                      and p.suffix in SOURCE_SUFFIXES and "__pycache__" not in p.parts)
    for path in sorted(files):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def code_provenance() -> dict:
    """What code this is: the stamp written by `prepare` when the source still matches it, else what git says,
    marked unverified."""
    digest = source_digest()
    stamp = json.loads((REPO / STAMP).read_text()) if (REPO / STAMP).is_file() else None
    if stamp and stamp.get("source_digest") == digest:
        state = "with uncommitted changes" if stamp["dirty"] else "clean"
        return {"code_commit": stamp["commit"], "code_verified": True, "source_digest": digest,
                "code_version": f"{stamp['version']}+{stamp['commit'][:7]}{'-dirty' if stamp['dirty'] else ''} "
                                f"(commit {state}; source digest verified here)"}
    from mdbd.core.provenance import code_version

    why = "no code stamp" if stamp is None else "the source differs from the stamp's"
    return {"code_commit": _git("rev-parse", "HEAD") or "unknown", "code_verified": False, "source_digest": digest,
            "code_version": f"{code_version()} (UNVERIFIED: {why}; git on a lent machine may name the session's "
                            f"starting commit)"}


def travelling_bytes(extra: list[Path]) -> tuple[int, int]:
    """(bytes of the working tree that travels: tracked + untracked-not-ignored files, bytes of `extra`)."""
    listed = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
    tree = sum((REPO / name).stat().st_size for name in listed.split("\0") if name and (REPO / name).is_file())
    carried = 0
    for path in extra:
        path = REPO / path
        carried += path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*")
                                                                  if p.is_file())
    return tree, carried


def prepare(args) -> int:
    from mdbd import __version__
    from mdbd.data.carry import make_carry, verify_carry
    from mdbd.core.weights import export_oxford
    import torch

    carry, weights = REPO / args.carry, REPO / WEIGHTS
    if carry.exists() and not args.force:
        check = verify_carry(carry)
        print(f"carry already there and verified: {carry} ({check.files} files)")
    else:
        report = make_carry(args.cuhk_root, carry, max_side=args.max_side, quality=args.quality, force=args.force)
        print(f"carry: {report.line()}")
    if not weights.is_file() or args.force:
        count, cache = export_oxford(weights, torch.float16)
        print(f"weights: {count} tensors as float16 from {cache} -> {weights}")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    stamp = {"commit": _git("rev-parse", "HEAD"), "branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
             "dirty": dirty, "version": __version__, "source_digest": source_digest(),
             "made": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    (REPO / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
    print(f"code stamp: {stamp['commit'][:7]}{' (UNCOMMITTED CHANGES: commit, then prepare again)' if dirty else ''}")
    tree, carried = travelling_bytes([GPU_DIR])
    total = tree + carried
    print(f"travels: working tree {tree / 2**20:.1f} MiB + {GPU_DIR} {carried / 2**20:.1f} MiB = "
          f"{total / 2**20:.1f} MiB of {TRAVEL_LIMIT / 2**20:.0f} MiB")
    if total > TRAVEL_LIMIT:
        print("TOO LARGE: make a smaller carry (--quality 80, or --max-side 320) or clean the working tree",
              file=sys.stderr)
        return 1
    print(f'device call: run(command="bash scripts/gpu_paper_cuhk.sh", carry=["{GPU_DIR}"], timeout_s=600)')
    return 0


# -- the run ------------------------------------------------------------------------------------------------------

class Stages:
    """Wall time of every stage against one deadline."""

    def __init__(self, seconds: float):
        self.start = time.monotonic()
        self.deadline = self.start + seconds
        self.rows: list[dict] = []

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, name: str, fn, *args, **kwargs):
        t0 = time.monotonic()
        print(f"== {name} ({self.left():.0f} s left)", flush=True)
        try:
            value = fn(*args, **kwargs)
            self.rows.append({"stage": name, "seconds": time.monotonic() - t0, "status": "done", "note": ""})
            return value
        except Exception as exc:  # noqa: BLE001 (a stage that fails is recorded; later stages write what there is)
            note = f"{type(exc).__name__}: {str(exc)[:300]}"
            self.rows.append({"stage": name, "seconds": time.monotonic() - t0, "status": "failed", "note": note})
            print(f"   FAILED: {note}", flush=True)
            return None

    def skip(self, name: str, why: str) -> None:
        self.rows.append({"stage": name, "seconds": 0.0, "status": "skipped", "note": why})
        print(f"== {name}: skipped ({why})", flush=True)


def machine_provenance(device: str) -> dict:
    import torch

    from mdbd.core.provenance import device_name

    info = {"device": device_name(device), "torch_version": torch.__version__, "python": platform.python_version(),
            "cpu_cores": os.cpu_count(), "host": platform.node()}
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = out.stdout.strip()
    return info


class Mps:
    """NVIDIA's multi-process service: lets the processes' kernels share the GPU at once instead of taking turns."""

    def __init__(self):
        self.control = shutil.which("nvidia-cuda-mps-control")
        self.running = False
        self.dir = Path(tempfile.mkdtemp(prefix="mdbd-mps-"))

    def start(self) -> bool:
        if not self.control:
            raise RuntimeError("nvidia-cuda-mps-control is not on this machine")
        os.environ["CUDA_MPS_PIPE_DIRECTORY"] = str(self.dir / "pipe")
        os.environ["CUDA_MPS_LOG_DIRECTORY"] = str(self.dir / "log")
        for sub in ("pipe", "log"):
            (self.dir / sub).mkdir(exist_ok=True)
        subprocess.run([self.control, "-d"], check=True, timeout=30)
        self.running = True
        probe = subprocess.run([sys.executable, "-c", "import torch; torch.zeros(1, device='cuda'); print('ok')"],
                               capture_output=True, text=True, timeout=90)
        if probe.stdout.strip() != "ok":
            self.stop()
            raise RuntimeError(f"a CUDA process did not start under MPS: {probe.stderr.strip()[-200:]}")
        return True

    def stop(self) -> None:
        if self.running:
            subprocess.run([self.control], input="quit\n", text=True, timeout=30)
            self.running = False
        for var in ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"):
            os.environ.pop(var, None)


def measure_forms(args, cfg, presets, out: Path, stages: Stages, mps: Mps, threads: int) -> tuple[object, bool]:
    """mdbd.bench.concurrency in a child process (a hard time limit); then, on CUDA with MPS available, the
    processes form again under MPS. Returns (the table, whether to keep MPS for the training)."""
    import pandas as pd

    def bench(forms, label, seconds):
        csv = out / f"forms-{label or 'plain'}.csv"
        cmd = [sys.executable, "-m", "mdbd.bench.concurrency", "--presets", *presets, "--forms", *forms,
               "--batch", str(cfg.batch_size), "--size", str(cfg.image_size), "--steps", str(args.forms_steps),
               "--warmup", str(args.forms_warmup), "--seconds", str(seconds), "--out", str(csv)]
        if cfg.device:
            cmd += ["--device", cfg.device]
        if label:
            cmd += ["--label", label]
        # the same CPU threads as a run gets (on a busy CPU, too many threads per process slow everything down)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(cmd, cwd=REPO, env=env, timeout=seconds + 60, check=True)
        return pd.read_csv(csv)

    table = bench(args.forms, "", args.forms_seconds)
    keep_mps = False
    cuda = cfg.device == "cuda" or (cfg.device is None and _cuda())
    if cuda and args.mps == "auto" and stages.left() > args.reserve + 120:
        try:
            mps.start()
            under = bench(["processes"], "MPS", 60)
            table = pd.concat([table, under], ignore_index=True)
            plain = table.loc[table["form"] == "processes", "images_per_s"]
            with_mps = under["images_per_s"].iloc[0]
            keep_mps = bool(len(plain) and with_mps == with_mps and with_mps > 1.1 * plain.iloc[0])
        except Exception as exc:  # noqa: BLE001 (MPS is an option; training goes on without it)
            print(f"   MPS not measured: {type(exc).__name__}: {exc}", flush=True)
        if not keep_mps:
            mps.stop()
    return table, keep_mps


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def base_config(args):
    from mdbd.runs.config import load_config, parse_overrides

    overrides = parse_overrides(args.overrides)
    weights = args.weights if args.weights == "none" else str((REPO / args.weights).resolve())
    return load_config(args.profile, dataset="cuhk", data_root=str((REPO / args.carry).resolve()),
                       backbone_weights=weights, device=args.device, **overrides)


def training_order() -> tuple[str, ...]:
    """Every preset (mdbd.model.spec.PRESETS), Table I's pair first."""
    from mdbd.model.spec import PRESETS

    return tuple(dict.fromkeys((*TABLE_I_FIRST, *PRESETS)))


def run_configs(cfg, presets, seeds, concurrent: int):
    """The ablation's configurations (mdbd.chain.stages.ablation.ablation_configs: `presets` x `seeds` at the profile's
    epochs, each in the default folder of its identity), started seed by seed in the order of `presets`; the loader
    workers shared out over the CPU (mdbd.runs.parallel.loader_workers)."""
    from mdbd.chain.stages.ablation import ablation_configs
    from mdbd.core.provenance import resolve_device
    from mdbd.runs.parallel import loader_workers

    workers = loader_workers(cfg.num_workers, concurrent, resolve_device(cfg.device))
    table_iii = cfg.replace(ablation={"epochs": cfg.epochs, "seeds": list(seeds), "presets": list(presets)})
    configs = sorted(ablation_configs(table_iii), key=lambda c: (list(seeds).index(c.seed), presets.index(c.preset)))
    return [c.replace(num_workers=workers) for c in configs]


def _epochs_reached(result) -> int:
    return int(len(result.log)) if result.log is not None else 0


def headline_rows(results, scored: dict, device_type: str):
    """One headline row (F_beta, MAE with intervals) per scored run, with the run's status and epochs."""
    import pandas as pd

    from mdbd.chain.stages.ablation import run_rows

    rows = []
    for result in results:
        evaluation = scored.get(result.label)
        if evaluation is None:
            continue
        table = run_rows(result, evaluation)  # Table III's rows of a run, as notebook 03 builds them
        cfg = result.job.config
        table["epochs_done"] = _epochs_reached(result)
        table["run_status"] = result.status
        table["complete"] = table["epochs_done"] == cfg.epochs
        table["wall_seconds"] = result.seconds
        table["compiled"] = cfg.compile_enabled(device_type)
        rows.append(table)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def write_tables(cfg, results, scored, provenance: dict, stages: Stages, forms, out: Path, device_type: str):
    """Every table under results/<profile>/cuhk/tables/gpu_*; returns (written CSVs, notes, the headline rows)."""
    import pandas as pd

    from mdbd.evaluation.report import save_table, table_title
    from mdbd.chain.stages.ablation import ablation_table, ordering_verdict, verdict_text
    from mdbd.chain.stages.common import HEADLINE
    from mdbd.chain.stages.comparison import table_one

    protocol = HEADLINE["fbeta"][0]  # the protocol the Table I audit selected (docs/metrics.md)
    runs = headline_rows(results, scored, device_type)
    written, notes = {}, {}

    def save(frame, name, title, **extra):
        frame = frame.copy()
        frame["code_version"] = provenance["code_version"]  # the honest one, over what git said on this machine
        paths = save_table(frame, name, profile=cfg.profile, dataset="cuhk", title=title,
                           provenance={**provenance, **extra})
        written[name] = paths["csv"]
        return paths

    status = pd.DataFrame([{"run": r.label, "status": r.status, "epochs_done": _epochs_reached(r),
                            "epochs": r.job.config.epochs, "train_seconds": r.train_seconds,
                            "wall_seconds": r.seconds, "scored": r.label in scored, "error": r.error,
                            "run_dir": str(r.run_dir), "dataset": "cuhk", "split": "test", "seed": r.job.config.seed}
                           for r in results])
    save(status, "gpu_runs_status", "Every run of the GPU script: status, epochs reached, times")
    if len(runs):
        save(runs, "gpu_runs", table_title("Every run, headline metrics", "cuhk", "test", protocol))
        every = pd.concat([scored[r.label].assign(run=r.label, epochs_done=_epochs_reached(r), run_status=r.status)
                           for r in results if r.label in scored], ignore_index=True)
        save(every, "gpu_all_protocols", table_title("Every run under every protocol", "cuhk", "test"))
        done = set(runs.loc[runs["complete"], "method"])
        complete = set(training_order()) <= done
        table3 = ablation_table(runs)
        if complete:
            notes["table_iii"] = verdict_text(ordering_verdict(table3), synthetic=False)
        else:
            notes["table_iii"] = (f"Table III incomplete: {len(done)} of {len(training_order())} presets trained to "
                                  f"the end ({', '.join(sorted(done)) or 'none'}); no verdict on the ordering.")
        save(table3, "gpu_table_iii", table_title("Table III (ablation): F_beta = protocol 1 max F, MAE", "cuhk",
                                                  "test", protocol), complete=complete, verdict=notes["table_iii"],
             quoted_from="Jiang et al. MMSP 2020, Table III (DUT; the paper has no Table III on Shi's)")
        first_scored = {}  # preset -> the evaluation of its first scored run (the first seed)
        for r in results:
            if r.label in scored:
                first_scored.setdefault(r.job.config.preset, scored[r.label])
        if "multianet" in first_scored:
            names = {"multianet": "MultiANet (ours)", "hl": "HL only (ours, same recipe)"}
            parts = [first_scored[k].assign(model=v) for k, v in names.items() if k in first_scored]
            table1 = table_one(pd.concat(parts, ignore_index=True), cfg)
            save(table1, "gpu_table_i", table_title("Table I (comparison): F_beta = protocol 1 max F, MAE", "cuhk",
                                                    "test", protocol),
                 note="classical baselines (HiFST, LBP) are CPU methods: 04_comparison on the full-size images")
        else:
            notes["table_i"] = "Table I not written: MultiANet was not scored"
    if forms is not None:
        forms.to_csv(out / "forms.csv", index=False)
        save(forms, "gpu_concurrency_forms", "Ways of sharing the GPU between trainings (mdbd.bench.concurrency)",
             dataset_note="random tensors, no data", split="n/a")
    stage_table = pd.DataFrame(stages.rows)
    stage_table.to_csv(out / "timings.csv", index=False)
    return written, notes, runs


def summary_text(provenance, stages, results, runs, notes, written, forms=None) -> str:
    lines = ["# GPU paper profile on real Shi's (CUHK): scripts/gpu_paper_cuhk.py", ""]
    lines += [f"- {k}: {v}" for k, v in provenance.items() if not isinstance(v, dict)]
    lines += ["", "## Stages", "", "| stage | seconds | status | note |", "| --- | ---: | --- | --- |"]
    lines += [f"| {r['stage']} | {r['seconds']:.1f} | {r['status']} | {r['note']} |" for r in stages.rows]
    lines += ["", "## Runs", "", "| run | status | epochs | train s | wall s |", "| --- | --- | ---: | ---: | ---: |"]
    lines += [f"| {r.label} | {r.status} | {_epochs_reached(r)}/{r.job.config.epochs} | {r.train_seconds:.0f} | "
              f"{r.seconds:.0f} |" for r in results]
    if len(runs):
        from mdbd.chain.stages.common import HEADLINE

        lines += ["", f"## Headline ({HEADLINE['fbeta'][0]}: protocol 1 max F beta^2 0.3 and MAE, the positive class "
                      "the Table I audit selected; 95% bootstrap CI)", ""]
        cols = ["method", "metric", "value", "ci_low", "ci_high", "epochs_done", "n_images"]
        lines += [runs[[c for c in cols if c in runs]].to_markdown(index=False, floatfmt=".4f")]
    if forms is not None and len(forms):
        lines += ["", "## Ways of sharing the GPU (random tensors; images/s over all models)", ""]
        cols = ["form", "status", "images_per_s", "speedup_vs_sequential", "note"]
        lines += [forms[[c for c in cols if c in forms]].to_markdown(index=False, floatfmt=".3g")]
    lines += ["", *[f"{v}" for v in notes.values()], "", "## Tables", ""]
    lines += [f"- {path}" for path in written.values()]
    return "\n".join(lines) + "\n"


def pack(out: Path, cfg, results) -> Path:
    """results.tar.gz: the tables and every run's logs (not the checkpoints), paths relative to the repository."""
    from mdbd.core.paths import RESULTS_DIR
    from mdbd.evaluation.report import results_dir

    target = out / "results.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        folder = results_dir(cfg.profile, "cuhk") / "tables"
        for path in sorted(folder.glob("gpu_*")) if folder.is_dir() else []:
            tar.add(path, arcname=str(Path("results") / path.relative_to(RESULTS_DIR)))
        for result in results:
            for path in result.job.run.records():  # log.csv, job.log, config.yaml, job.json, evaluation.csv
                tar.add(path, arcname=str(Path("results") / path.relative_to(RESULTS_DIR)))
        for name in ("forms.csv", "timings.csv"):
            if (out / name).is_file():
                tar.add(out / name, arcname=f"results/{cfg.profile}/cuhk/gpu-script/{name}")
    return target


def run(args) -> int:
    import json as _json

    import pandas as pd

    from mdbd.data.carry import verify_carry
    from mdbd.core.io import atomic_write_text, sha256_file
    from mdbd.runs.parallel import Job, describe_form, prepare_shared_inputs, run_jobs, threads_per_run
    from mdbd.core.provenance import resolve_device

    stages = Stages(args.seconds)
    out = Path(args.out or os.environ.get("OUT") or REPO / "results" / "gpu-paper-cuhk")
    out.mkdir(parents=True, exist_ok=True)
    cfg = base_config(args)
    device = resolve_device(cfg.device)
    cfg = cfg.replace(device=device)
    presets = [p for p in training_order() if p in args.presets] + [p for p in args.presets
                                                                     if p not in training_order()]
    provenance = {"made_by": "scripts/gpu_paper_cuhk.py (trained and scored here)", "profile": cfg.profile,
                  "dataset": "cuhk", "split": "test", "seed": ",".join(map(str, args.seeds)),
                  "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    provenance.update(stages.run("machine", machine_provenance, device) or {})
    provenance.update(code_provenance())
    carry = stages.run("verify carry", verify_carry, REPO / args.carry)
    if carry is not None:
        manifest = carry.manifest
        provenance.update({"data_root": f"carry of {manifest['source']} ({args.carry})",
                           "carry_settings": _json.dumps(manifest["settings"]),
                           "carry_manifest_sha256": sha256_file(REPO / args.carry / "carry.json"),
                           "carry_complete": manifest["complete"]})
    weights_file = REPO / args.weights
    provenance["weights"] = (f"Oxford VGG-16, fp16 export {args.weights} (sha256 {sha256_file(weights_file)[:16]})"
                             if weights_file.is_file() else args.weights)
    if carry is None:
        provenance["error"] = "the carry did not verify: nothing trained"
    mps = Mps()
    forms, keep_mps = None, False
    try:
        configs = run_configs(cfg, presets, args.seeds, args.concurrent)
        concurrent = min(args.concurrent, len(configs))
        cores = os.cpu_count() or 1
        threads = args.threads or threads_per_run(device, concurrent)
        # seven runs compiling at once would each start a pool of one compile worker per core
        os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(max(1, cores // max(concurrent, 1))))
        if carry is not None and args.forms and args.forms_seconds > 0 and stages.left() > args.reserve + 60:
            measured = stages.run("measure concurrency forms", measure_forms, args, cfg, presets, out, stages, mps,
                                  threads)
            if measured is not None:
                forms, keep_mps = measured
        elif carry is not None:
            stages.skip("measure concurrency forms", "not asked for, or too little time left")
        provenance.update({"concurrency": describe_form(concurrent, threads, in_process=False)
                           + (" under MPS" if keep_mps else ""),
                           "mps": keep_mps, "num_workers_per_run": configs[0].num_workers if configs else None,
                           "compile": f"{cfg.compile} (resolves to "
                                      f"{'on' if cfg.compile_enabled(device.split(':')[0]) else 'off'} here)"})
        results = []
        if carry is not None and stages.left() > args.reserve:
            stages.run("prepare caches", prepare_shared_inputs, configs)
            jobs = [Job(c, bootstrap=args.bootstrap) for c in configs]
            results = stages.run("train and score", run_jobs, jobs, concurrent=concurrent, threads=threads,
                                 deadline=stages.deadline - args.reserve, in_process=False) or []
        elif carry is not None:
            stages.skip("train and score", "deadline reached before training")
            results = []
        scored = {r.label: r.evaluation for r in results if r.evaluation is not None}
        late = [r for r in results if r.status == "stopped" and r.checkpoint.is_file()]
        if late and stages.left() > 20:
            rescore = stages.run("score stopped runs at their last checkpoint", run_jobs,
                                 [Job(r.job.config, bootstrap=args.bootstrap, label=r.label, train=False)
                                  for r in late], concurrent=min(len(late), concurrent), threads=threads,
                                 deadline=stages.deadline - 10, in_process=False) or []
            scored.update({r.label: r.evaluation for r in rescore if r.evaluation is not None})
        elif late:
            stages.skip("score stopped runs at their last checkpoint", "deadline reached")
    finally:
        mps.stop()
    provenance["ended"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    tables = stages.run("write tables", write_tables, cfg, results, scored, provenance, stages, forms, out,
                        device.split(":")[0])
    written, notes, runs = tables if tables is not None else ({}, {"tables": "writing the tables failed"},
                                                               pd.DataFrame())
    provenance["total_seconds"] = round(time.monotonic() - stages.start, 1)
    atomic_write_text(out / "provenance.json", _json.dumps(
        {**provenance, "stages": stages.rows, "tables": {k: str(v) for k, v in written.items()}}, indent=1,
        default=str))
    atomic_write_text(out / "summary.md", summary_text(provenance, stages, results, runs, notes, written, forms))
    pack(out, cfg, results)
    for name in ("forms.csv", "timings.csv", *(p.name for p in out.glob("forms-*.csv"))):
        (out / name).unlink(missing_ok=True)  # inside results.tar.gz: $OUT brings back at most 8 files
    print((out / "summary.md").read_text())
    return 0


def main(argv=None) -> int:
    from mdbd.bench.concurrency import FORMS
    from mdbd.data.carry import DEFAULT_MAX_SIDE, DEFAULT_QUALITY

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("prepare", help="make data/gpu/ here: carry, fp16 weights, code stamp; check the size")
    p.add_argument("--cuhk-root", required=True, help="a CUHK folder in the official layout (image/ + gt/)")
    p.add_argument("--carry", default=str(CARRY))
    p.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE)
    p.add_argument("--quality", type=int, default=DEFAULT_QUALITY)
    p.add_argument("--force", action="store_true", help="make carry and weights again")
    p.set_defaults(func=prepare)
    r = sub.add_parser("run", help="train, score and write the tables (on the GPU machine)")
    r.add_argument("--profile", default="paper")
    r.add_argument("--carry", default=str(CARRY))
    r.add_argument("--weights", default=str(WEIGHTS), help="backbone weights file, or none (tests)")
    r.add_argument("--device", default=None)
    r.add_argument("--presets", nargs="+", default=list(training_order()))
    r.add_argument("--seeds", nargs="+", type=int, default=[0])
    r.add_argument("--concurrent", type=int, default=7, help="runs at once (processes sharing the device)")
    r.add_argument("--threads", type=int, default=None, help="CPU threads per run (default: shared out)")
    r.add_argument("--bootstrap", type=int, default=1000)
    r.add_argument("--seconds", type=float, default=570.0, help="the deadline: everything written by then")
    r.add_argument("--reserve", type=float, default=60.0, help="seconds kept after training for scoring and tables")
    r.add_argument("--forms", nargs="*", default=list(FORMS), choices=FORMS, help="concurrency forms to measure")
    r.add_argument("--forms-seconds", type=float, default=60.0)
    r.add_argument("--forms-steps", type=int, default=15)
    r.add_argument("--forms-warmup", type=int, default=3)
    r.add_argument("--mps", choices=("auto", "off"), default="auto", help="try NVIDIA MPS for the processes form")
    r.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE")
    r.add_argument("--out", default=None, help="where the files to bring back go (default $OUT)")
    r.set_defaults(func=run)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
