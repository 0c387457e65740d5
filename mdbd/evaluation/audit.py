"""The protocol audit: which scoring protocol reproduces a paper's quoted numbers (docs/metrics.md, "Protocol audit").

For methods whose maps we have (published maps, re-implementations) and for which the paper quotes F_beta and MAE,
every candidate protocol scores the maps, and the candidates are ranked by their distance to the quoted numbers:

    methods = [AuditMethod("DBDF", "published maps", dbdf_maps), AuditMethod("HiFST", "re-implemented", hifst_maps)]
    audit = audit_protocols(methods, gts, quoted={"DBDF": (0.841, 0.323), "HiFST": (0.865, 0.232)})
    audit.ranking.head(), audit.verdict

A candidate is one protocol's rules (the four of the literature and D-DFFNet's) x one of its F-measure variants
(max F of the averaged per-image F curves or of the averaged P and R, mean F, adaptive F, pooled or per-image) x MAE
raw or normalised x positive class (in focus, blur) x scoring size (the GT's own, or 320x320).
Distance: the mean absolute difference over every quoted number, |F - F_quoted| and |MAE - MAE_quoted| of every
method, so 0.01 means our numbers sit 0.01 from the paper's on average.

Beside the candidates, `AuditResult.mae_readings` scores MAE in the other ways a paper's code may have computed it
(MAE_READINGS: binarised maps, pixels pooled over the images, 8-bit maps), at the GT's size, against each quoted MAE:
whether any reading the candidates do not cover closes a gap that F does not show.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mdbd.core.errors import ConfigError, DataError
from mdbd.metrics import MAE, POSITIVE_CLASSES, rule_metrics
from mdbd.metrics.base import normalize_map
from mdbd.metrics.inputs import resize_nearest, resize_to, to_float, validate_gt

#: the protocols' rules the audit applies, and the F-measure variants each of them reports
F_VARIANTS: dict[str, tuple[str, ...]] = {
    "sod": ("max_f", "max_f_pr", "mean_f", "adaptive_f"),
    "adaptive1.5": ("adaptive15_f", "adaptive15_f_pooled"),
    "fixed0.5": ("f", "f_pooled"),
    "zhao": ("max_f",),
    "ddffnet": ("f", "f_no_quirk"),
}
#: plain words for the variants, for tables and figures
F_VARIANT_TEXT = {
    ("sod", "max_f"): "max F, mean of per-image F curves", ("sod", "max_f_pr"): "max F of mean P and R",
    ("sod", "mean_f"): "mean F over thresholds", ("sod", "adaptive_f"): "adaptive F (2 x mean)",
    ("adaptive1.5", "adaptive15_f"): "F at 1.5 x mean, per image", ("adaptive1.5", "adaptive15_f_pooled"):
        "F at 1.5 x mean, pooled pixels", ("fixed0.5", "f"): "F at 0.5, per image",
    ("fixed0.5", "f_pooled"): "F at 0.5, pooled pixels", ("zhao", "max_f"): "per-image max F, averaged",
    ("ddffnet", "f"): "max(F at 0.5, all-positive), per image (their test.py)",
    ("ddffnet", "f_no_quirk"): "F at 0.5, per image (their test1.py)",
}
MAE_VARIANTS = ("raw", "normalised")
#: how each protocol normalises its map for MAE ("normalised"); "raw" is the map as it is
MAE_NORMALISATION = {"sod": "minmax", "adaptive1.5": "minmax", "fixed0.5": "minmax", "zhao": "max", "ddffnet": "minmax"}
#: the MAE each protocol's own code computes
PROTOCOL_MAE = {"sod": "normalised", "adaptive1.5": "raw", "fixed0.5": "raw", "zhao": "normalised", "ddffnet": "raw"}
SIZES = ("gt", "320")
AUDIT_SIDE = 320
#: a best distance at or below this is called a match: a quoted number has 3 decimals, a JPEG copy of a map or a
#: re-implementation moves scores by a few thousandths
MATCH_TOLERANCE = 0.01


#: readings of "MAE" beyond the candidates' raw / min-max / max-normalised maps: the map (in focus = 1) as each reading
#: turns it into the values compared with the binary GT. Binarised readings threshold the blur map (the headline's
#: positive class; 1 - the min-max map) and return the in-focus indicator, so that |map - GT| stays comparable.
MAE_READINGS = {
    "raw map": lambda p: p,
    "min-max normalised (protocol sod)": lambda p: normalize_map(p, "minmax"),
    "max normalised (protocol zhao)": lambda p: normalize_map(p, "max"),
    "min-max, quantised to 8 bits": lambda p: np.round(normalize_map(p, "minmax") * 255) / 255,
    "min-max, binarised: blur where >= 0.5": lambda p: (1 - normalize_map(p, "minmax") < 0.5).astype(np.float64),
    "min-max, binarised: blur where >= 2 x its mean": lambda p: _adaptive_binary(1 - normalize_map(p, "minmax")),
}
#: how the per-image values are combined: the mean of per-image MAEs (every candidate's), or one mean over all pixels
MAE_POOLING = ("per image", "pooled pixels")


def _adaptive_binary(blur: np.ndarray) -> np.ndarray:
    """The in-focus indicator of the blur map thresholded at twice its mean (capped at 1): SOD's adaptive rule."""
    return (blur < min(2 * float(blur.mean()), 1.0)).astype(np.float64)


class MaeReadings:
    """Every MAE reading x pooling of one method's maps at the GT's size (step / get_results, as the metrics)."""

    def __init__(self) -> None:
        self._per_image = {name: [] for name in MAE_READINGS}
        self._pooled = {name: [0.0, 0] for name in MAE_READINGS}

    def step(self, pred: np.ndarray, gt: np.ndarray) -> None:
        p, g = to_float(np.asarray(pred)), np.asarray(gt, dtype=np.float64)
        for name, reading in MAE_READINGS.items():
            error = np.abs(reading(p) - g)
            self._per_image[name].append(float(error.mean()))
            self._pooled[name][0] += float(error.sum())
            self._pooled[name][1] += error.size

    def get_results(self) -> dict[tuple[str, str], float]:
        out = {}
        for name in MAE_READINGS:
            per_image, pooled = MAE_POOLING
            out[(name, per_image)] = float(np.mean(self._per_image[name]))
            out[(name, pooled)] = self._pooled[name][0] / self._pooled[name][1]
        return out


@dataclass(frozen=True)
class Candidate:
    """One way of turning maps into (F_beta, MAE)."""

    protocol: str
    f_metric: str
    mae: str
    positive: str
    size: str

    @property
    def label(self) -> str:
        where = "GT size" if self.size == "gt" else f"{AUDIT_SIDE}x{AUDIT_SIDE}"
        return (f"{self.protocol} {self.f_metric} | MAE {self.mae} | {self.positive} positive | {where}")

    def describe(self) -> str:
        return (f"protocol {self.protocol} ({F_VARIANT_TEXT[(self.protocol, self.f_metric)]}, metric "
                f"{self.f_metric}), MAE {self.mae}, {self.positive} as the positive class, scored at "
                f"{'the ground truth' + chr(39) + 's own size' if self.size == 'gt' else f'{AUDIT_SIDE}x{AUDIT_SIDE}'}")


def candidates() -> list[Candidate]:
    """Every candidate, in a fixed order (protocol, F variant, MAE, positive, size)."""
    return [Candidate(p, f, mae, pos, size) for p, variants in F_VARIANTS.items() for f in variants
            for mae in MAE_VARIANTS for pos in POSITIVE_CLASSES for size in SIZES]


@dataclass
class AuditMethod:
    """A method's maps (in-focus probability, one per ground truth, same order) and where they come from."""

    name: str
    source: str  # "published maps" | "re-implemented" | ...
    maps: Iterable[np.ndarray]


@dataclass
class AuditResult:
    """`scores`: per method x candidate, our F and MAE; `ranking`: one row per candidate, best first;
    `verdict`: the plain-words conclusion; `best`: the best candidate."""

    scores: pd.DataFrame
    ranking: pd.DataFrame
    best: Candidate
    verdict: str
    n_images: int
    tolerance: float = MATCH_TOLERANCE
    methods: list[str] = field(default_factory=list)
    mae_readings: pd.DataFrame | None = None  # method x reading x pooling: MAE against the quoted MAE


def _at_size(pred: np.ndarray, gt: np.ndarray, size: str) -> tuple[np.ndarray, np.ndarray]:
    """The pair as scored at `size`: unchanged at the GT's size; at 320x320 the map resized bicubically and the
    GT by nearest neighbour (it stays binary)."""
    if size == "gt":
        return pred, gt
    shape = (AUDIT_SIDE, AUDIT_SIDE)
    return resize_to(pred, shape, "bicubic"), resize_nearest(gt, shape)


def _method_scores(method: AuditMethod, gts: Sequence[np.ndarray]) -> tuple[list[dict], list[dict]]:
    """One pass over the method's maps: every protocol's F metrics for both positive classes and both sizes, and
    MAE raw / min-max / max-normalised per size (MAE does not depend on the positive class); and the MAE readings
    at the GT's size (rows of `mae_readings`)."""
    f_metrics = {(size, positive, p): [m for m in rule_metrics(p, positive) if set(m.names) & set(variants)]
                 for size in SIZES for positive in POSITIVE_CLASSES for p, variants in F_VARIANTS.items()}
    maes = {(size, norm): MAE(normalize=norm) for size in SIZES for norm in ("none", "minmax", "max")}
    readings = MaeReadings()
    n = 0
    for n, pred in enumerate(method.maps, start=1):
        if n > len(gts):
            raise DataError(f"audit: {method.name} has more maps than the {len(gts)} ground truths")
        image_id = f"{method.name} #{n - 1}"
        gt = validate_gt(gts[n - 1], image_id)
        readings.step(pred, gt)
        for size in SIZES:
            p, g = _at_size(np.asarray(pred), gt, size)
            for (s, _, _), ms in f_metrics.items():
                if s == size:
                    for m in ms:
                        m.step(p, g, id=image_id)
            for (s, _), m in maes.items():
                if s == size:
                    m.step(p, g, id=image_id)
    if n != len(gts):
        raise DataError(f"audit: {method.name} has {n} maps for {len(gts)} ground truths")
    results = {key: {name: v for m in ms for name, v in m.get_results().items() if name != "curve"}
               for key, ms in f_metrics.items()}
    mae = {key: m.get_results()["mae"] for key, m in maes.items()}
    rows = []
    for c in candidates():
        norm = "none" if c.mae == "raw" else MAE_NORMALISATION[c.protocol]
        rows.append({"method": method.name, "source": method.source, "candidate": c.label, **c.__dict__,
                     "fbeta": results[(c.size, c.positive, c.protocol)][c.f_metric], "mae_value": mae[(c.size, norm)],
                     "n_images": n})
    reading_rows = [{"method": method.name, "source": method.source, "reading": name, "pooling": pooling,
                     "mae_value": value, "n_images": n} for (name, pooling), value in readings.get_results().items()]
    return rows, reading_rows


def audit_protocols(methods: Sequence[AuditMethod], gts: Sequence[np.ndarray],
                    quoted: Mapping[str, tuple[float, float]], tolerance: float = MATCH_TOLERANCE) -> AuditResult:
    """Score every method under every candidate and rank the candidates by their distance to `quoted`
    ({method: (F_beta, MAE)} as the paper prints them). `gts`: the ground truths, 1 = in focus."""
    if not methods:
        raise ConfigError("audit: no methods to audit")
    unquoted = [m.name for m in methods if m.name not in quoted]
    if unquoted:
        raise ConfigError(f"audit: no quoted numbers for {unquoted}; quoted: {sorted(quoted)}")
    if len(gts) == 0:
        raise DataError("audit: no ground truths")
    per_method = [_method_scores(m, gts) for m in methods]
    scores = pd.DataFrame([row for rows, _ in per_method for row in rows])
    scores["fbeta_quoted"] = scores["method"].map(lambda k: quoted[k][0])
    scores["mae_quoted"] = scores["method"].map(lambda k: quoted[k][1])
    scores["fbeta_difference"] = scores["fbeta"] - scores["fbeta_quoted"]
    scores["mae_difference"] = scores["mae_value"] - scores["mae_quoted"]
    ranking = rank_candidates(scores)
    best = Candidate(**{k: ranking.iloc[0][k] for k in ("protocol", "f_metric", "mae", "positive", "size")})
    published = [m.name for m in methods if m.source == "published maps"]
    verdict = verdict_text(ranking, tolerance, len(gts), published)
    readings = pd.DataFrame([row for _, rows in per_method for row in rows])
    readings["mae_quoted"] = readings["method"].map(lambda k: quoted[k][1])
    readings["mae_difference"] = readings["mae_value"] - readings["mae_quoted"]
    return AuditResult(scores=scores, ranking=ranking, best=best, verdict=verdict, n_images=len(gts),
                       tolerance=tolerance, methods=[m.name for m in methods], mae_readings=readings)


def rank_candidates(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per candidate: `distance` (mean |difference| over every method's F and MAE), `max_abs_difference`,
    the same distance on published maps alone (`distance_published_maps`: no re-implementation in between), and each
    method's two differences; sorted by distance (ties keep the candidates' fixed order)."""
    keys = ["candidate", "protocol", "f_metric", "mae", "positive", "size"]
    scores = scores.assign(abs_f=scores["fbeta_difference"].abs(), abs_mae=scores["mae_difference"].abs())
    grouped = scores.groupby(keys, sort=False)
    ranking = grouped.apply(lambda g: pd.Series({
        "distance": float(np.mean(np.r_[g["abs_f"], g["abs_mae"]])),
        "max_abs_difference": float(np.max(np.r_[g["abs_f"], g["abs_mae"]])),
        "distance_published_maps": _distance(g[g["source"] == "published maps"])}), include_groups=False).reset_index()
    wide = scores.pivot_table(index="candidate", columns="method", values=["fbeta_difference", "mae_difference"],
                              sort=False)
    wide.columns = [f"{'F' if value == 'fbeta_difference' else 'MAE'} - quoted: {method}"
                    for value, method in wide.columns]
    ranking = ranking.merge(wide.reset_index(), on="candidate", how="left")
    ranking = ranking.sort_values("distance", kind="stable").reset_index(drop=True)
    ranking.insert(0, "rank", np.arange(1, len(ranking) + 1))
    ranking["description"] = [F_VARIANT_TEXT[(p, f)] for p, f in zip(ranking["protocol"], ranking["f_metric"])]
    return ranking


def _distance(g: pd.DataFrame) -> float:
    return float(np.mean(np.r_[g["abs_f"], g["abs_mae"]])) if len(g) else float("nan")


def verdict_text(ranking: pd.DataFrame, tolerance: float, n_images: int,
                 published_methods: Sequence[str] = ()) -> str:
    """The conclusion in plain words: the best candidate and its distance, whether it matches within `tolerance`,
    the same on published maps alone (no re-implementation in between), the candidates as close as it, and the
    closest candidate with the other positive class and with another protocol."""
    best = ranking.iloc[0]
    text = [f"Best candidate over {n_images} images: {best['candidate']} ({best['description']}), mean |ours - "
            f"quoted| = {best['distance']:.4f} (largest single difference {best['max_abs_difference']:.4f})."]
    if best["distance"] <= tolerance:
        text.append(f"It matches the paper's numbers within {tolerance:g}.")
    else:
        text.append(f"No candidate matches all quoted numbers within {tolerance:g}: the closest is "
                    f"{best['distance']:.4f} away.")
    if published_methods and ranking["distance_published_maps"].notna().any():
        on_maps = ranking.sort_values("distance_published_maps", kind="stable").iloc[0]
        same = "the same candidate" if on_maps["candidate"] == best["candidate"] else on_maps["candidate"]
        verdict = "a match" if on_maps["distance_published_maps"] <= tolerance else "no match"
        text.append(f"On the published maps alone ({', '.join(published_methods)}; no re-implementation in between) "
                    f"the best is {same}, {on_maps['distance_published_maps']:.4f} from the paper ({verdict} within "
                    f"{tolerance:g}); the rest of the distance is in the re-implemented methods' rows (their code, "
                    "or the paper's own runs of them: docs/results.md sets HiFST's authors' published maps beside "
                    "ours).")
    close = ranking[ranking["distance"] <= best["distance"] + 1e-3]
    if len(close) > 1:
        text.append(f"{len(close)} candidates come within 0.001 of the best: "
                    + "; ".join(close["candidate"].head(6)) + ("; ..." if len(close) > 6 else "") + ".")
    for what, other in (("the other positive class", ranking[ranking["positive"] != best["positive"]]),
                        ("another protocol", ranking[ranking["protocol"] != best["protocol"]])):
        if len(other):
            text.append(f"Closest with {what}: {other.iloc[0]['candidate']}, {other.iloc[0]['distance']:.4f}.")
    return " ".join(text)


def audit_table(result: AuditResult) -> pd.DataFrame:
    """The ranking as a table to save, with the distance definition spelled out in a column."""
    out = result.ranking.copy()
    out["distance_definition"] = ("mean over " + ", ".join(result.methods)
                                  + " of |F - F_quoted| and |MAE - MAE_quoted|")
    out["n_images"] = result.n_images
    return out


def mae_readings_table(result: AuditResult) -> pd.DataFrame:
    """One row per MAE reading x pooling: each method's MAE minus its quoted MAE, and the mean |difference| over
    the methods (`distance`), closest first; whether any reading brings every method within the audit's tolerance."""
    readings = result.mae_readings
    wide = readings.pivot_table(index=["reading", "pooling"], columns="method", values="mae_difference", sort=False)
    wide.columns = [f"MAE - quoted: {method}" for method in wide.columns]
    values = readings.pivot_table(index=["reading", "pooling"], columns="method", values="mae_value", sort=False)
    values.columns = [f"MAE: {method}" for method in values.columns]
    table = values.join(wide)
    differences = table[[c for c in table.columns if c.startswith("MAE - quoted")]].abs()
    table["distance"] = differences.mean(axis=1)
    table["within_tolerance"] = differences.max(axis=1) <= result.tolerance
    table = table.sort_values("distance", kind="stable").reset_index()
    table["n_images"] = result.n_images
    return table
