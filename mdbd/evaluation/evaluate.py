"""Scoring prediction maps into tidy tables with provenance (docs/metrics.md).

    result = evaluate_folders("preds/", "data/cuhk/gt", dataset="cuhk", model="multianet", split="test")
    # GT polarity: declared (gt_polarity=), or known from the dataset (cuhk: white = blurred, dut: white = in focus) or
    # from Shi's file names; a bare folder without a declared polarity is an error (resolve_gt_polarity)
    write_results(result, "results/eval.csv")   # + results/eval_curves.csv, both written atomically
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from mdbd.data.readers import check_cuhk_polarity, read_mask_levels
from mdbd.core.errors import ConfigError, DataError
from mdbd.metrics import PROTOCOLS, RESIZING_PROTOCOLS, bootstrap_ci, paired_difference, protocol_metrics
from mdbd.metrics.inputs import check_positive, resize_to
from mdbd.core.names import POLARITIES
from mdbd.core.provenance import provenance

GT_POLARITIES = POLARITIES
#: what white means in each dataset's GT files, as distributed (Shi's CUHK: blurred; Zhao's DUT: in focus)
DATASET_GT_POLARITY = {"cuhk": "blur_white", "dut": "infocus_white"}
_SHI_STEM = re.compile(r"^out_of_focus\d{4}$", re.IGNORECASE)
#: DUT's GT folder names (official and Zhao's redistribution; mdbd.data.readers.DUT_LAYOUTS)
DUT_GT_FOLDERS = ("DUT600GT_Training", "DUT500GT-Testing", "dut500-gt")
PRED_EXTS = (".png",)
GT_EXTS = (".png", ".bmp", ".jpg", ".jpeg")
IDENTITY_COLUMNS = ("model", "dataset", "split")
TABLE_COLUMNS = ("model", "dataset", "split", "protocol", "positive", "metric", "value", "ci_low", "ci_high",
                 "n_images")
CURVE_COLUMNS = ("model", "dataset", "split", "protocol", "positive", "threshold", "precision", "recall",
                 "fmeasure", "f_of_mean_pr")
#: provenance columns always present (empty when not given)
PROVENANCE_COLUMNS = ("weights", "profile", "device", "seed", "n_boot", "confidence", "code_version",
                      "torch_version")


@dataclass
class EvaluationResult:
    """``table``: a row per model x dataset x split x protocol x metric; ``curves``: PR/F curves;
    ``per_image``: every per-image score (id, protocol, metric, value); ``metrics``: the stepped metric objects of
    each protocol, for paired comparisons between models scored on the same images (`paired_comparison`)."""

    table: pd.DataFrame
    curves: pd.DataFrame
    per_image: pd.DataFrame = field(default_factory=pd.DataFrame)
    metrics: dict[str, list] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """A compact view: one row per protocol x metric, value with its interval."""
        t = self.table
        ci = [f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "" for lo, hi in zip(t["ci_low"], t["ci_high"])]
        return pd.DataFrame({"protocol": t["protocol"], "positive": t["positive"], "metric": t["metric"],
                             "value": t["value"].round(4), "95% CI": ci, "n": t["n_images"]})


def evaluate_maps(preds: Iterable[Any], gts: Iterable[Any], ids: Sequence[Hashable] | None = None,
                  protocols: Sequence[str] = PROTOCOLS, positive: str = "infocus", bootstrap: int = 1000,
                  seed: int = 0, strict_gt: bool = True, confidence: float = 0.95, extended: bool = False,
                  **provenance_fields: Any) -> EvaluationResult:
    """Score paired prediction maps (in-focus probability) and ground truths (1 = in focus), streaming.

    ``protocols``: any of PROTOCOLS ("sod", "adaptive1.5", "fixed0.5", "zhao", "ddffnet", "sod-blur"). ``positive``:
    "infocus" or "blur" (both maps flipped; "ddffnet" and "sod-blur" always score blur, and their rows say so).
    ``bootstrap``: resamples of the test images for the intervals (0: none), seeded by ``seed``.
    ``strict_gt``: refuse graded GT masks (False: each protocol binarises them with its own rule).
    ``extended``: also the S-measure, E-measure (max, mean, adaptive) and weighted F under the protocols where they
    apply ("sod", "sod-blur": mdbd.metrics.EXTENDED_PROTOCOLS), their foreground being the protocol's positive class.
    ``provenance_fields``: model, dataset, split, weights, profile, device and anything else worth a column.
    """
    return _evaluate_pairs(_strict_zip(preds, gts), ids, protocols, positive, bootstrap, seed, strict_gt,
                           confidence, provenance_fields, extended)


def _evaluate_pairs(pairs: Iterable[tuple[Any, Any]], ids: Sequence[Hashable] | None, protocols: Sequence[str],
                    positive: str, bootstrap: int, seed: int, strict_gt: bool, confidence: float,
                    provenance_fields: dict[str, Any], extended: bool = False) -> EvaluationResult:
    check_positive(positive)
    protocols = tuple(dict.fromkeys(protocols))
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ConfigError(f"protocols {unknown or list(protocols)}: expected some of {PROTOCOLS}")
    if bootstrap < 0:
        raise ConfigError(f"bootstrap={bootstrap}: the number of resamples must be >= 0")
    metrics = {p: protocol_metrics(p, positive=positive, strict_gt=strict_gt, extended=extended) for p in protocols}
    id_list = list(ids) if ids is not None else None
    n = 0
    for pred, gt in pairs:
        image_id = id_list[n] if id_list is not None and n < len(id_list) else f"#{n}"
        for ms in metrics.values():
            for m in ms:
                m.step(pred, gt, id=image_id)
        n += 1
    if n == 0:
        raise DataError("evaluate: no prediction / ground-truth pairs were given")
    if id_list is not None and len(id_list) != n:
        raise DataError(f"evaluate: {len(id_list)} ids for {n} images")

    fields = {**{k: None for k in IDENTITY_COLUMNS + PROVENANCE_COLUMNS}, **provenance(**provenance_fields),
              "seed": seed, "n_boot": bootstrap, "confidence": confidence}
    rows, curve_frames, image_frames = [], [], []
    for protocol, ms in metrics.items():
        cis = bootstrap_ci(ms, n_boot=bootstrap, seed=seed, confidence=confidence) if bootstrap > 0 else {}
        for m in ms:
            results = m.get_results()
            for name in m.names:
                lo, hi = cis.get(name, (np.nan, np.nan))
                rows.append({"protocol": protocol, "positive": m.positive, "metric": name, "value": results[name],
                             "ci_low": lo, "ci_high": hi, "n_images": n})
            if "curve" in results:
                curve = pd.DataFrame(results["curve"])
                curve.insert(0, "protocol", protocol)
                curve.insert(1, "positive", m.positive)
                curve_frames.append(curve)
            per_image = m.per_image()
            for name in m.names:  # the metrics that are plain per-image averages
                if name in per_image:
                    image_frames.append(pd.DataFrame({"id": [str(i) for i in m.ids], "protocol": protocol,
                                                      "positive": m.positive, "metric": name,
                                                      "value": per_image[name]}))
    table = _with_fields(pd.DataFrame(rows), fields, TABLE_COLUMNS)
    curves = _with_fields(pd.concat(curve_frames, ignore_index=True) if curve_frames
                          else pd.DataFrame(columns=list(CURVE_COLUMNS[3:])), fields, CURVE_COLUMNS)
    per_image_table = _with_fields(pd.concat(image_frames, ignore_index=True), fields, IDENTITY_COLUMNS)
    return EvaluationResult(table=table, curves=curves, per_image=per_image_table, metrics=metrics)


def paired_comparison(a: Sequence[EvaluationResult], b: Sequence[EvaluationResult], protocol: str,
                      n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
                      ) -> dict[str, tuple[float, float, float]]:
    """A - B under `protocol` with a paired bootstrap over the shared test images (and over seeds: one result per
    seed on each side), ``{metric: (difference, low, high)}`` (mdbd.metrics.paired_difference)."""
    sides = []
    for side in (a, b):
        missing = [i for i, r in enumerate(side) if protocol not in r.metrics]
        if missing or not side:
            raise ConfigError(f"paired comparison: protocol {protocol!r} was not scored with its metrics kept for "
                              f"{len(missing) or 'any'} result(s); score again with this version of mdbd")
        sides.append([r.metrics[protocol] for r in side])
    return paired_difference(sides[0], sides[1], n_boot=n_boot, seed=seed, confidence=confidence)


def _strict_zip(preds: Iterable[Any], gts: Iterable[Any]):
    """zip that refuses sequences of different lengths instead of silently dropping images."""
    sentinel = object()
    pred_it, gt_it = iter(preds), iter(gts)
    count = 0
    while True:
        pred, gt = next(pred_it, sentinel), next(gt_it, sentinel)
        if pred is sentinel and gt is sentinel:
            return
        if pred is sentinel or gt is sentinel:
            more = "ground truths" if pred is sentinel else "predictions"
            raise DataError(f"evaluate: more {more} than the {count} given for the other side")
        count += 1
        yield pred, gt


def _with_fields(df: pd.DataFrame, fields: dict, leading: Sequence[str]) -> pd.DataFrame:
    """Constant provenance columns added; the leading columns first, the rest in a stable order."""
    df = df.copy()
    for key, value in fields.items():
        if key not in df.columns:
            df[key] = value
    first = [c for c in leading if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


# -- folders --------------------------------------------------------------------------------------

def _natural_key(stem: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", stem)]


def _files_by_stem(folder: Path, exts: Sequence[str], what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{what} folder {folder} does not exist or is not a folder")
    files: dict[str, Path] = {}
    for path in folder.iterdir():
        if path.is_file() and path.suffix.lower() in exts:
            if path.stem in files:
                raise DataError(f"{what} folder {folder} has two files for {path.stem!r}: "
                                f"{files[path.stem].name} and {path.name}")
            files[path.stem] = path
    if not files:
        raise DataError(f"{what} folder {folder} is empty: no {'/'.join(exts)} files")
    return files


def ground_truth_files(gt_dir: str | os.PathLike) -> dict[str, Path]:
    """``<stem> -> file`` for the ground truths of a folder, in natural order (DataError: missing or empty folder,
    two files for one stem)."""
    files = _files_by_stem(Path(gt_dir), GT_EXTS, "ground-truth")
    return {stem: files[stem] for stem in sorted(files, key=_natural_key)}


def pair_folders(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(stem, prediction file, GT file) for every stem, in natural order; mismatched folders are an error."""
    preds = _files_by_stem(Path(pred_dir), PRED_EXTS, "prediction")
    gts = _files_by_stem(Path(gt_dir), GT_EXTS, "ground-truth")
    no_gt, no_pred = sorted(set(preds) - set(gts), key=_natural_key), sorted(set(gts) - set(preds), key=_natural_key)
    if no_gt or no_pred:
        def few(stems):
            return ", ".join(stems[:5]) + (f" (+{len(stems) - 5} more)" if len(stems) > 5 else "")
        problems = []
        if no_gt:
            problems.append(f"{len(no_gt)} prediction(s) without ground truth in {gt_dir}: {few(no_gt)}")
        if no_pred:
            problems.append(f"{len(no_pred)} ground truth(s) without prediction in {pred_dir}: {few(no_pred)}")
        raise DataError("prediction and ground-truth folders do not match: " + "; ".join(problems))
    return [(stem, preds[stem], gts[stem]) for stem in sorted(preds, key=_natural_key)]


#: how far apart the channels of a colour file may be and still count as grey (JPEG rounding)
GREY_TOLERANCE = 2
#: a map's aspect ratio may differ from its ground truth's by this fraction and still be resized (rounding)
ASPECT_TOLERANCE = 0.02


def _map_error(path: Path, problem: str) -> DataError:
    return DataError(f"prediction map {path}: {problem}")


def _grey_of_colour(img, path: Path, what: str) -> np.ndarray:
    """The grey levels of a colour (RGB/RGBA/palette) map whose channels agree, else a DataError."""
    rgba = np.asarray(img.convert("RGBA"))
    alpha = rgba[..., 3]
    rgb = rgba[..., :3].astype(np.int16)
    spread = int(np.abs(rgb - rgb[..., :1]).max())
    if alpha.min() < 255:
        hint = ("the values look stored in the alpha channel" if spread <= GREY_TOLERANCE and rgb.min() == rgb.max()
                else "transparent pixels have no defined value")
        raise _map_error(path, f"{what} with transparency ({int(np.count_nonzero(alpha < 255))} pixel(s) not "
                               f"opaque): {hint}; save the map as 8-bit grey")
    if spread > GREY_TOLERANCE:
        raise _map_error(path, f"{what} whose channels differ (by up to {spread} levels): a colour-mapped heat map "
                               "(e.g. jet) or a photo, not a grey probability map; save the map as 8-bit grey")
    return np.asarray(img.convert("RGB").convert("L"))


def read_prediction(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """A prediction map file (white = in focus) and the encoding it was read from (docs/metrics.md, "Accepted
    prediction maps"): uint8 0..255, or float64 in [0, 1] for 16-bit and float files. Every other form is a DataError
    naming the file and the likely cause: colour, transparency, 32-bit integers out of 16-bit range, floats outside
    [0, 1], and maps whose values stop at 1 (a 0..1 map saved without scaling) or, in 16 bits, at 255 (8-bit values
    in a 16-bit file)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode == "L":
                arr, encoding = np.asarray(img), "8-bit grey"
            elif mode == "1":
                arr, encoding = np.asarray(img, dtype=np.uint8) * np.uint8(255), "1-bit (1 -> 255)"
            elif mode.startswith("I;16") or mode == "I":
                raw = np.asarray(img).astype(np.int64)
                lo, hi = int(raw.min()), int(raw.max())
                if lo < 0 or hi > 65535:
                    raise _map_error(path, f"32-bit integer map with values {lo}..{hi}: no known scale; save it as "
                                           "8-bit (0..255) or 16-bit (0..65535) grey")
                if 0 < hi <= 255:
                    raise _map_error(path, f"16-bit map whose values stop at {hi} of 65535: 8-bit values stored in "
                                           "a 16-bit file? (save as 8-bit, or scale by 257)")
                arr, encoding = raw / 65535.0, "16-bit grey (/65535)"
            elif mode == "F":
                raw = np.asarray(img, dtype=np.float64)
                lo, hi = float(raw.min()), float(raw.max())
                if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 1:
                    raise _map_error(path, f"floating-point map with values {lo:g}..{hi:g}: only [0, 1] is a "
                                           "probability; 0..255 floats? save as 8-bit grey")
                arr, encoding = raw, "float [0, 1]"
            elif mode == "LA":
                la = np.asarray(img)
                if la[..., 1].min() < 255:
                    raise _map_error(path, "grey map with transparency: transparent pixels have no defined value "
                                           "(or the values are in the alpha channel); save the map as 8-bit grey")
                arr, encoding = la[..., 0].copy(), "grey + opaque alpha"
            elif mode in ("RGB", "RGBA", "P", "PA"):
                arr, encoding = _grey_of_colour(img, path, {"P": "palette map", "PA": "palette map"}.get(
                    mode, f"{mode} map")), f"{'palette' if mode.startswith('P') else mode} grey (equal channels)"
            else:
                raise _map_error(path, f"image mode {mode} is not a grey probability map; save it as 8-bit grey")
    except DataError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    if arr.dtype == np.uint8 and int(arr.max()) == 1:
        raise _map_error(path, "8-bit map whose values are only 0 and 1: a 0..1 map saved without scaling to "
                               "0..255? (multiply by 255)")
    return arr, encoding


def load_prediction(path: str | os.PathLike) -> np.ndarray:
    """A prediction map file as uint8 (or float for 16-bit and float files); high = in focus (read_prediction)."""
    return read_prediction(path)[0]


def check_same_orientation(pred_shape: tuple[int, ...], gt_shape: tuple[int, ...], pred_path: Path,
                           gt_path: Path | str) -> None:
    """A map to be resized to its ground truth must have its aspect ratio: a map that is the GT's transpose (a rotated
    image, e.g. EXIF orientation applied on one side only) or another image is a DataError, never stretched."""
    (h, w), (gh, gw) = pred_shape[:2], gt_shape[:2]
    if abs(h / w - gh / gw) <= ASPECT_TOLERANCE * (gh / gw):
        return
    turned = " (its transpose: a rotated image?)" if abs(w / h - gh / gw) <= ASPECT_TOLERANCE * (gh / gw) else ""
    raise DataError(f"{pred_path}: prediction is {h}x{w} but its ground truth {Path(gt_path).name} is {gh}x{gw}"
                    f"{turned}; another aspect ratio is not resized")


def load_ground_truth(path: str | os.PathLike, polarity: str = "infocus_white") -> np.ndarray:
    """A GT mask file in our convention (white = in focus); ``blur_white`` masks (Shi's CUHK) are inverted.

    Read by mdbd.data.readers.read_mask_levels, as the dataset readers' scoring path reads masks: graded levels are
    kept (the protocols binarise), so folders and datasets give the same numbers."""
    if polarity not in GT_POLARITIES:
        raise ConfigError(f"gt_polarity={polarity!r}: expected one of {GT_POLARITIES}")
    try:
        return read_mask_levels(path, white_is_infocus=polarity == "infocus_white")
    except DataError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def resolve_gt_polarity(gt_dir: str | os.PathLike, gt_polarity: str | None = None, dataset: str | None = None,
                        stems: Sequence[str] | None = None) -> tuple[str, str]:
    """(polarity, where it came from) for the GT files in `gt_dir`: the declared `gt_polarity`; else the convention
    of `dataset` (cuhk: blur_white, dut: infocus_white); else a folder recognised by its names (every file named
    out_of_focusNNNN: Shi's CUHK, blur_white; a DUT GT folder name: infocus_white). Anything else is a ConfigError
    saying how to declare it: never a silent default, since a flipped GT still gives plausible-looking numbers."""
    if gt_polarity is not None:
        if gt_polarity not in GT_POLARITIES:
            raise ConfigError(f"gt_polarity={gt_polarity!r}: expected one of {GT_POLARITIES}")
        known = DATASET_GT_POLARITY.get(dataset or "")
        note = f"; note: {dataset}'s files as distributed are {known}" if known and known != gt_polarity else ""
        return gt_polarity, f"declared{note}"
    if dataset in DATASET_GT_POLARITY:
        return DATASET_GT_POLARITY[dataset], f"the {dataset} convention (dataset={dataset})"
    gt_dir = Path(gt_dir)
    if stems is None:
        stems = list(_files_by_stem(gt_dir, GT_EXTS, "ground-truth"))
    if stems and all(_SHI_STEM.match(s) for s in stems):
        return "blur_white", "recognised as Shi's CUHK masks (out_of_focusNNNN files, white = blurred)"
    if gt_dir.name in DUT_GT_FOLDERS:
        return "infocus_white", f"recognised as DUT masks (folder {gt_dir.name}, white = in focus)"
    raise ConfigError(f"the polarity of the ground truth in {gt_dir} is not known: declare what white means there, "
                      "gt_polarity='infocus_white' (white = in focus, e.g. DUT) or 'blur_white' (white = blurred, "
                      "e.g. Shi's CUHK); CLI: --gt-polarity infocus_white|blur_white, or --dataset cuhk|dut")


def evaluate_folders(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, gt_polarity: str | None = None,
                     resize: bool = False, **kwargs: Any) -> EvaluationResult:
    """Score every ``<stem>.png`` prediction in ``pred_dir`` against ``<stem>.png|.bmp|.jpg`` in ``gt_dir``.

    ``gt_polarity``: what white means in the GT files; None: known from ``dataset=`` or from the folder
    (resolve_gt_polarity), else a ConfigError. The table records it (``gt_polarity``, ``gt_polarity_from``).
    ``resize``: resize predictions to their GT's size (bicubic); without it a size mismatch is an error
    (unless every protocol asked for resizes on its own: zhao, ddffnet). Other keywords go to ``evaluate_maps``.
    """
    pairs = pair_folders(pred_dir, gt_dir)
    gt_polarity, polarity_from = resolve_gt_polarity(gt_dir, gt_polarity, kwargs.get("dataset"),
                                                     [stem for stem, _, _ in pairs])
    self_resizing = set(kwargs.get("protocols", PROTOCOLS)) <= set(RESIZING_PROTOCOLS)
    if gt_polarity == "blur_white" and all(_SHI_STEM.match(stem) for stem, _, _ in pairs):
        # Shi's masks read as white = blurred: an inverted copy is refused (the rule of the CUHK reader)
        check_cuhk_polarity(Path(gt_dir), {int(stem[-4:]): gt_path for stem, _, gt_path in pairs})

    encodings: dict[str, int] = {}

    def stream():  # one file pair at a time: memory stays flat however large the test set
        for _, pred_path, gt_path in pairs:
            (pred, encoding), gt = read_prediction(pred_path), load_ground_truth(gt_path, gt_polarity)
            encodings[encoding] = encodings.get(encoding, 0) + 1
            if pred.shape != gt.shape:
                if resize:
                    check_same_orientation(pred.shape, gt.shape, pred_path, gt_path)
                    pred = resize_to(pred, gt.shape)
                elif not self_resizing:
                    raise DataError(f"{pred_path}: prediction is {pred.shape[0]}x{pred.shape[1]} but its ground "
                                    f"truth {gt_path.name} is {gt.shape[0]}x{gt.shape[1]}; pass --resize "
                                    "(resize=True) to resize predictions to the GT size")
            yield pred, gt
        # read once every map is: the table records how the maps were read
        kwargs["pred_encoding"] = "; ".join(f"{name}: {count}" for name, count in sorted(encodings.items()))

    names = ("protocols", "positive", "bootstrap", "seed", "strict_gt", "confidence")
    defaults = {"protocols": PROTOCOLS, "positive": "infocus", "bootstrap": 1000, "seed": 0, "strict_gt": True,
                "confidence": 0.95}
    extended = kwargs.pop("extended", False)
    options = [kwargs.pop(k, defaults[k]) for k in names]
    kwargs.setdefault("gt_dir", str(gt_dir))
    kwargs.setdefault("pred_dir", str(pred_dir))
    kwargs.setdefault("gt_polarity", gt_polarity)
    kwargs.setdefault("gt_polarity_from", polarity_from)
    kwargs.setdefault("resized", resize)
    # metrics name bad images by stem, so errors point at the file
    return _evaluate_pairs(stream(), [stem for stem, _, _ in pairs], *options, kwargs, extended)


# -- writing --------------------------------------------------------------------------------------

def curves_path(out_csv: str | os.PathLike) -> Path:
    out = Path(out_csv)
    return out.with_name(f"{out.stem}_curves{out.suffix or '.csv'}")


def per_image_path(out_csv: str | os.PathLike) -> Path:
    out = Path(out_csv)
    return out.with_name(f"{out.stem}_per_image{out.suffix or '.csv'}")


def check_output_csv(out_csv: str | os.PathLike) -> Path:
    """The table's path checked before any scoring: DataError when it (or a file written beside it) is a folder, when
    a folder above it is a file, or when its folder cannot be created or written."""
    out = Path(out_csv)
    for target in (out, curves_path(out), per_image_path(out)):
        if target.is_dir():
            raise DataError(f"output {target} is a folder; give a file name for the table, e.g. {target / 'eval.csv'}")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise DataError(f"output {out} lies under a file ({parent}); give a path in a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the folder of {out}: {exc.strerror or exc}") from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise DataError(f"cannot write {out}: its folder {out.parent} is not writable")
    return out


def write_results(result: EvaluationResult, out_csv: str | os.PathLike, per_image: bool = False) -> list[Path]:
    """Write the table to ``out_csv`` and the curves to ``<stem>_curves.csv`` beside it (and, with
    ``per_image``, ``<stem>_per_image.csv``). All or nothing: every file goes to a temporary name first; the
    previous files are then moved aside, the new ones renamed into place, and the previous ones removed only when all
    are in place, so an error at any step (a full disk, a failed rename) leaves the previous set exactly as it was
    and no temporaries (DataError naming the fault). Files get ordinary permissions (0644)."""
    out = check_output_csv(out_csv)
    targets = [(result.table, out), (result.curves, curves_path(out))]
    if per_image:
        targets.append((result.per_image, per_image_path(out)))
    temps: list[Path] = []
    moved: list[tuple[Path, Path]] = []  # (previous file's temporary name, its own name)
    placed: list[Path] = []
    try:
        for frame, target in targets:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            os.close(fd)
            temps.append(Path(tmp))
            frame.to_csv(tmp, index=False)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600
        for _, target in targets:
            if target.exists():
                aside = target.with_name(f".{target.name}.{os.getpid()}.previous")
                os.replace(target, aside)
                moved.append((aside, target))
        for tmp, (_, target) in zip(temps, targets):
            os.replace(tmp, target)
            placed.append(target)
    except BaseException as exc:
        for target in placed:
            target.unlink(missing_ok=True)
        for aside, target in moved:
            os.replace(aside, target)
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise DataError(f"writing {out} failed ({exc.strerror or exc}); the previous files are unchanged") from None
        raise
    for aside, _ in moved:
        aside.unlink(missing_ok=True)
    return [target for _, target in targets]
