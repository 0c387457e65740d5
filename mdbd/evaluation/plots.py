"""Figures of the study. Each function returns a matplotlib Figure; notebooks save it with
mdbd.evaluation.report.save_figure."""

from __future__ import annotations

from typing import Sequence

import matplotlib

if matplotlib.get_backend().lower() not in ("module://matplotlib_inline.backend_inline", "nbagg", "widget",
                                            "module://ipympl.backend_nbagg"):
    matplotlib.use("Agg")  # headless runs (papermill, CI); notebooks keep their inline backend
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

sns.set_theme(context="paper", style="whitegrid")


def image_mask_grid(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], ids: Sequence[str], *,
                    title: str = "") -> plt.Figure:
    """Images on the first row, their masks (white = in focus) below."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.0), squeeze=False)
    for j in range(n):
        axes[0, j].imshow(images[j])
        axes[0, j].set_title(str(ids[j]), fontsize=7)
        axes[1, j].imshow(masks[j], cmap="gray", vmin=0, vmax=1)
    for ax in axes.ravel():
        ax.set_axis_off()
    axes[1, 0].text(-0.05, 0.5, "mask (white = in focus)", transform=axes[1, 0].transAxes, rotation=90,
                    ha="right", va="center", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def loss_curves(log: pd.DataFrame, *, title: str = "") -> plt.Figure:
    """Training loss per epoch, and validation F-beta / MAE where they were computed."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.plot(log["epoch"], log["train_loss"], marker="o", label="train loss (BCE)")
    if "val_loss" in log and log["val_loss"].notna().any():
        ax1.plot(log["epoch"], log["val_loss"], marker="s", label="validation loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    for col, label in (("val_fmax", "max F-beta"), ("val_mae", "MAE")):
        if col in log and log[col].notna().any():
            sub = log[log[col].notna()]
            ax2.plot(sub["epoch"], sub[col], marker="o", label=label)
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1)
    ax2.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


#: line style per `source` of a curve: maps we computed are solid, other authors' published maps dashed
SOURCE_STYLES = {"published maps": "--"}


def pr_and_f_curves(curves: pd.DataFrame, *, title: str = "") -> plt.Figure:
    """Fig. 4 style: precision-recall curves (left) and F-measure against threshold (right), one line per method.
    With a `source` column each legend entry says it ("DBDF, published maps") and published maps are dashed."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.5, 3.8))
    for method, sub in curves.groupby("model", sort=False):
        sub = sub.sort_values("threshold")
        source = sub["source"].iloc[0] if "source" in sub and pd.notna(sub["source"].iloc[0]) else None
        label = f"{method}, {source}" if source else method
        style = SOURCE_STYLES.get(source, "-")
        ax1.plot(sub["recall"], sub["precision"], style, label=label)
        ax2.plot(sub["threshold"], sub["fmeasure"], style, label=label)
    ax1.set_xlabel("recall")
    ax1.set_ylabel("precision")
    ax1.set_xlim(0, 1)
    ax1.set_ylim(0, 1.02)
    ax2.set_xlabel("threshold")
    ax2.set_ylabel("F-measure (beta^2 = 0.3)")
    ax2.set_ylim(0, 1.02)
    ax2.legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def metric_bars(table: pd.DataFrame, *, x: str, metrics: Sequence[str] = ("fbeta", "mae"), title: str = "",
                quoted_col: str | None = None, quoted_label: str = "paper (quoted)") -> plt.Figure:
    """One panel per metric: our value with its 95% interval as bars, the quoted value (`quoted_col`) as a marker."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        sub = table[table["metric"] == metric].reset_index(drop=True)
        pos = np.arange(len(sub))
        err = None
        if {"ci_low", "ci_high"} <= set(sub.columns):
            err = np.vstack([(sub["value"] - sub["ci_low"]).clip(lower=0),
                             (sub["ci_high"] - sub["value"]).clip(lower=0)])
        ax.bar(pos, sub["value"], yerr=err, capsize=3, color=sns.color_palette()[0], label="ours (95% CI)")
        if quoted_col and quoted_col in sub:
            ax.scatter(pos, sub[quoted_col], color="crimson", marker="D", zorder=3, label=quoted_label)
        ax.set_xticks(pos)
        ax.set_xticklabels(sub[x], rotation=35, ha="right", fontsize=7)
        ax.set_title(metric)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def visual_grid(rows: Sequence[dict[str, np.ndarray]], columns: Sequence[str], *, title: str = "") -> plt.Figure:
    """Fig. 5-7 style: one row per image, one column per map (image first, ground truth last)."""
    n_rows, n_cols = len(rows), len(columns)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.6 * n_rows + 0.4), squeeze=False)
    for i, row in enumerate(rows):
        for j, col in enumerate(columns):
            ax = axes[i, j]
            value = row[col]
            if value.ndim == 3:
                ax.imshow(value)
            else:
                ax.imshow(value, cmap="gray", vmin=0, vmax=1)
            if i == 0:
                ax.set_title(col, fontsize=7)
            ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def audit_heatmap(ranking: pd.DataFrame, *, title: str = "", best: str | None = None) -> plt.Figure:
    """The protocol audit at a glance: one cell per candidate, rows = protocol x F variant x MAE, columns = positive
    class x scoring size, colour (log scale) and number = distance to the paper's quoted numbers (lower is closer);
    the best candidate (`best`: its label, default the first row) is outlined. A second panel shows the distance on
    published maps alone when the ranking has it (no re-implementation in between)."""
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    r = ranking.assign(row=ranking["protocol"] + " " + ranking["f_metric"] + " | MAE " + ranking["mae"],
                       col=ranking["positive"] + " positive\n" + ranking["size"].map(
                           lambda s: "GT size" if s == "gt" else f"{s}x{s}"))
    order = r.groupby("row", sort=False)["distance"].min().sort_values().index  # closest rows first
    panels = [("distance", "all methods")]
    if "distance_published_maps" in r and r["distance_published_maps"].notna().any():
        panels.append(("distance_published_maps", "published maps alone"))
    values = pd.concat([r[v] for v, _ in panels])
    norm = LogNorm(vmin=max(float(values.min()), 1e-4), vmax=float(values.max()))
    n_rows, n_cols = len(order), r["col"].nunique()
    fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * (1.4 * n_cols + 2.2) + 2.6, 0.3 * n_rows + 1.8),
                             squeeze=False, sharey=True)
    best_row = r[r["candidate"] == best].iloc[0] if best is not None else r.iloc[0]
    for k, (ax, (value, label)) in enumerate(zip(axes[0], panels)):
        grid = r.pivot_table(index="row", columns="col", values=value, sort=False).loc[order]
        sns.heatmap(grid, annot=True, fmt=".3f", cmap="viridis_r", norm=norm, annot_kws={"fontsize": 7}, ax=ax,
                    cbar=k == len(panels) - 1, cbar_kws={"label": "mean |ours - quoted| (log scale)"})
        ax.add_patch(Rectangle((list(grid.columns).index(best_row["col"]), list(grid.index).index(best_row["row"])),
                               1, 1, fill=False, edgecolor="crimson", linewidth=2.5))
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("")
        ax.set_ylabel("protocol, F variant, MAE" if k == 0 else "")
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def fidelity_frontier(table: pd.DataFrame, *, protocol: str, quoted: dict[str, float], paper_flops: float,
                      chain: str, frontiers: dict[str, pd.DataFrame], title: str = "") -> plt.Figure:
    """Max F and MAE of every sweep run against its training FLOPs (log scale): the frontier joined, the chain's
    recipe starred, the paper's quoted value (dashed) and our estimate of the paper's training FLOPs (dotted)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, label in zip(axes, ("max_f", "mae"), ("max F-beta (higher is better)", "MAE (lower is better)")):
        sub = table[(table["protocol"] == protocol) & (table["metric"] == metric)]
        ax.scatter(sub["train_flops"], sub["value"], color="tab:blue", zorder=3, label="held-out runs")
        for _, row in sub.iterrows():
            ax.annotate(row["candidate"], (row["train_flops"], row["value"]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        front = frontiers[metric]
        ax.plot(front["train_flops"], front["value"], color="tab:blue", alpha=0.6, label="frontier")
        mine = sub[sub["candidate"] == chain]
        ax.scatter(mine["train_flops"], mine["value"], marker="*", s=160, color="tab:orange", zorder=4,
                   label=f"the chain's recipe ({chain})")
        if metric in quoted:
            ax.axhline(quoted[metric], color="tab:red", ls="--", lw=1, label="paper (quoted, Shi's test split)")
        ax.axvline(paper_flops, color="gray", ls=":", lw=1, label="paper's training FLOPs (our estimate)")
        ax.set_xscale("log")
        ax.set_xlabel("training FLOPs (forward FLOPs x images seen x 3)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=6, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
