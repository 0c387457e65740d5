"""04 comparison: the protocol audit and Table I (our model, the re-run baselines and published maps scored
identically, beside the paper). The CUHK-TE-1 table (Zhao's 100 images, D-DFFNet's protocol) is stage 08
(mdbd.chain.stages.cuhk_te1).

Every measured row says where its maps came from (`source`: trained here / re-implemented / published maps /
implemented here); quoted rows say `quoted`. What cannot be measured on this run's data (no published maps, the
synthetic benchmark, images missing) is reported as "not available" with the reason, never silently dropped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pandas as pd

from mdbd.evaluation.audit import PROTOCOL_MAE, AuditMethod, Candidate, audit_protocols
from mdbd.runs.config import RunConfig
from mdbd.evaluation.evaluate import EvaluationResult
from mdbd.metrics import PROTOCOLS, protocol_positive, rule_of
from mdbd.evaluation.published import evaluate_published, open_known, published_method
from mdbd.core.names import REAL_DATASETS
from mdbd.evaluation.report import QUOTED, load_paper_tables
from mdbd.chain.stages.common import (ALL_METRICS, BASELINE_LABELS, EXTENDED_METRICS, HEADLINE, SOURCES, baseline_maps,
                                display_path, evaluate_run, headline, open_split, score_baselines)

if TYPE_CHECKING:
    from mdbd.evaluation.audit import AuditResult, Candidate
    from mdbd.evaluation.evaluate import EvaluationResult

OURS = "MultiANet (ours)"
TRAINED_HERE = "trained here"
QUOTED_SOURCE = "quoted"
#: the methods Table I compares with published maps, where the maps are available (mdbd.evaluation.published)
PUBLISHED = ("dbdf",)
#: the methods of Table I whose maps the audit scores: DBDF from its authors' maps, HiFST and LBP re-implemented
AUDIT_BASELINES = ("hifst", "lbp")
#: the names of our rows in the paper's tables
PAPER_NAMES = {OURS: "MultiANet", "HiFST": "HiFST", "LBP": "LBP", "DBDF": "DBDF"}


@dataclass
class PublishedScores:
    """The published-map methods scored on one split, and, for those that could not be, why."""

    results: list[EvaluationResult] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)


def published_results(cfg: RunConfig, split: str = "test", *, keys: Sequence[str] = PUBLISHED,
                      protocols: Sequence[str] | None = None, bootstrap: int = 1000,
                      split_file: str | Path | None = None) -> PublishedScores:
    """Each method's published maps (mdbd.evaluation.published) scored against `cfg`'s split like every other method. A
    method whose maps do not exist for this dataset or are not on this machine is `unavailable` with the reason; an
    incomplete folder is an error (it names the missing ids)."""
    out = PublishedScores()
    for key in keys:
        method = published_method(key)
        if cfg.dataset != method.dataset:
            out.unavailable[method.label] = (f"not available: {method.label}'s authors published maps for "
                                             f"{method.dataset} only, this run's dataset is {cfg.results_label()}")
            continue
        pairs = open_split(cfg, split, split_file)
        maps = open_known(key, pairs.ids)
        if maps is None:
            out.unavailable[method.label] = (
                f"not available: {method.label}'s published maps were not found ($MDBD_SHARED_DATA/published-maps/"
                f"{method.dataset}/{key} or data/published-maps/{method.dataset}/{key}; `mdbd published fetch {key} "
                f"--source ...`, docs/metrics.md)")
            continue
        out.results.append(evaluate_published(
            maps, (pairs.load_mask(i) for i in range(len(pairs))), pred_dir=display_path(maps.folder),
            protocols=protocols or PROTOCOLS, bootstrap=bootstrap, seed=cfg.seed, extended=EXTENDED_METRICS,
            model=method.label,
            dataset=cfg.dataset, split=pairs.split, weights=f"none (the authors' maps: {method.citation})",
            profile=cfg.profile, device="n/a (published maps)"))
    return out


def compare_methods(cfg: RunConfig, checkpoint: Path, baselines: Sequence[str] = ("hifst", "lbp", "laplacian"),
                    split: str = "test", bootstrap: int = 1000, progress: bool = True,
                    published: Sequence[EvaluationResult] = ()):
    """Our full model, the re-run baselines and any published maps (`published_results`) scored identically on one
    split, every protocol; each row's `source` says where the maps came from."""
    ours = evaluate_run(checkpoint, cfg, split, bootstrap)
    for frame in (ours.table, ours.curves):
        frame["model"] = OURS
        frame["source"] = TRAINED_HERE
    results = [ours, *score_baselines(cfg, baselines, split, protocols=PROTOCOLS, bootstrap=bootstrap,
                                       progress=progress), *published]
    return EvaluationResult(table=pd.concat([r.table for r in results], ignore_index=True),
                            curves=pd.concat([r.curves for r in results], ignore_index=True))


def table_one(comparison_table: pd.DataFrame, cfg: RunConfig, unavailable: dict[str, str] | None = None
              ) -> pd.DataFrame:
    """Table I: F_beta and MAE (as HEADLINE reads them) per method on our data, beside the paper's quoted numbers for
    the same method on Shi's and DUT. Methods the paper lists that we do not measure are kept as quoted rows
    (`source` "quoted"); `note` says why a row is not measured (`unavailable`: method -> reason)."""
    unavailable = unavailable or {}
    ours = headline(comparison_table)
    if "source" not in ours:
        ours["source"] = None
    ours["source"] = ours["source"].fillna(ours["method"].map(lambda m: TRAINED_HERE if m == OURS else None))
    ours["method_key"] = ours["method"].map(PAPER_NAMES)
    paper = load_paper_tables("I")
    out = []
    for ds in REAL_DATASETS:
        q = paper[paper["dataset"] == ds][["method", "metric", "value"]].rename(
            columns={"method": "method_key", "value": f"{QUOTED}: {ds}"})
        out.append(q.set_index(["method_key", "metric"]))
    quoted = pd.concat(out, axis=1).reset_index()
    table = ours.merge(quoted, on=["method_key", "metric"], how="outer")
    quoted_only = table["value"].isna()
    table["method"] = table["method"].fillna(table["method_key"] + " (quoted only, not re-run)")
    table["source"] = table["source"].where(~quoted_only, QUOTED_SOURCE)
    table["note"] = ""
    table.loc[quoted_only, "note"] = table.loc[quoted_only, "method_key"].map(
        lambda key: unavailable.get(key, "quoted only: no code or maps to re-run here"))
    for ds in REAL_DATASETS:
        table[f"difference vs {ds}"] = (table["value"] - table[f"{QUOTED}: {ds}"]).where(table["dataset"].eq(ds))
    for col in ("dataset", "split", "protocol", "positive", "profile", "device", "seed", "weights"):
        if col in table:
            table[col] = table[col].astype(object).where(~quoted_only, "n/a (quoted only)")
    table["measured_here"] = ~quoted_only
    cols = ["method", "source", "metric", "value", "ci_low", "ci_high", f"{QUOTED}: cuhk", f"{QUOTED}: dut",
            "difference vs cuhk", "difference vs dut", "measured_here", "note", "dataset", "split", "protocol",
            "positive", "profile", "device", "seed", "weights", "n_images"]
    table = table.sort_values(["metric", "measured_here", "method"], ascending=[True, False, True])
    return table[[c for c in cols if c in table]].reset_index(drop=True)


def all_metrics_table(comparison_table: pd.DataFrame) -> pd.DataFrame:
    """One row per method (ours, the re-run baselines, published maps), one column per protocol x metric of the field's
    full set (ALL_METRICS under the headline protocol `sod-blur` and the study's default `sod`), each with its 95%
    interval; the foreground of the structure metrics is the protocol's positive class (blur for sod-blur, in focus
    for sod: docs/metrics.md)."""
    protocols = ("sod-blur", "sod")
    sub = comparison_table[comparison_table["protocol"].isin(protocols) & comparison_table["metric"].isin(ALL_METRICS)]
    rows = []
    for method, group in sub.groupby("model", sort=False):
        row = {"method": method, "source": group["source"].iloc[0] if "source" in group else None}
        for protocol in protocols:
            for metric in ALL_METRICS:
                hit = group[(group["protocol"] == protocol) & (group["metric"] == metric)]
                if len(hit):
                    r = hit.iloc[0]
                    row[f"{protocol}:{metric}"] = r["value"]
                    row[f"{protocol}:{metric} ci"] = f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        rows.append(row)
    table = pd.DataFrame(rows)
    first = sub.drop_duplicates("model").set_index("model")
    for col in ("dataset", "split", "profile", "device", "seed", "weights", "n_images"):
        if col in first:
            table[col] = table["method"].map(first[col])
    table["foreground"] = "sod-blur: blurred; sod: in focus"
    return table


# -- the protocol audit ------------------------------------------------------------------------------------

@dataclass
class AuditOutcome:
    """The audit's result, or why it could not run, and what it left out."""

    result: AuditResult | None
    notes: list[str]

    @property
    def available(self) -> bool:
        return self.result is not None


def protocol_audit(cfg: RunConfig, split: str = "test", progress: bool = True) -> AuditOutcome:
    """The protocol audit on `cfg`'s split: DBDF from its published maps, HiFST and LBP from our re-implementations,
    against the paper's Table I (Shi's). "Not available" (with the reason) off Shi's data or with no maps at all."""
    if cfg.dataset != "cuhk":
        return AuditOutcome(None, [f"not available: the paper's Table I numbers are on Shi's (CUHK) test split; this "
                                   f"run's dataset is {cfg.results_label()}"])
    pairs = open_split(cfg, split)
    gts = [pairs.load_mask(i) for i in range(len(pairs))]
    methods, notes = [], []
    dbdf = open_known("dbdf", pairs.ids)
    if dbdf is None:
        notes.append("DBDF: not available (its published maps were not found; see `mdbd published fetch dbdf`)")
    else:
        methods.append(AuditMethod("DBDF", "published maps", (dbdf.load(i, g.shape) for i, g in enumerate(gts))))
    for name, maps in baseline_maps(cfg, AUDIT_BASELINES, split, progress).items():
        methods.append(AuditMethod(BASELINE_LABELS[name], SOURCES[name], maps))
    paper = load_paper_tables("I")
    paper = paper[paper["dataset"] == "cuhk"].pivot(index="method", columns="metric", values="value")
    quoted = {m.name: (float(paper.loc[m.name, "fbeta"]), float(paper.loc[m.name, "mae"])) for m in methods}
    if pairs.split != "test" or len(pairs) != 100:
        notes.append(f"on {len(pairs)} images of split {pairs.split!r}, not the paper's 100 (0605-0704): a rough check")
    return AuditOutcome(audit_protocols(methods, gts, quoted), notes)


def headline_candidate() -> Candidate:
    """HEADLINE as an audit candidate: its F protocol's rules and positive class, its MAE protocol's normalisation,
    at the GT's size (where every stage scores)."""
    (f_protocol, f_metric), (mae_protocol, _) = HEADLINE["fbeta"], HEADLINE["mae"]
    return Candidate(protocol=rule_of(f_protocol), f_metric=f_metric, mae=PROTOCOL_MAE[rule_of(mae_protocol)],
                     positive=protocol_positive(f_protocol), size="gt")


def headline_verdict(result: AuditResult) -> str:
    """Whether the audit's best candidate is the study's HEADLINE, in one sentence."""
    ours = headline_candidate()
    if result.best == ours:
        return f"The audit's best candidate IS the study's headline protocol (HEADLINE = {HEADLINE})."
    rank = result.ranking.loc[result.ranking["candidate"] == ours.label, "rank"]
    where = f"rank {int(rank.iloc[0])} of {len(result.ranking)}" if len(rank) else "not among the candidates"
    return (f"The audit's best candidate ({result.best.label}) is NOT the study's headline protocol "
            f"(HEADLINE = {HEADLINE}: {ours.label}, {where}).")
