"""Issue 13's diagnostics table at the prediction size: the attention statistics (mdbd.model.diagnostics) of the
real-CUHK chain's full MultiANet models at 448 x 448 on the first five test images (0605-0609), with their masks:

- default: the chain's model (notebook 02's run; attention_scale and spatial_gate at their defaults),
- literal: eq. 1 and eq. 3 as the paper writes them (attention_scale none, spatial_gate sigmoid; notebook 03 run
  with `--param attention_scale=none --param spatial_gate=sigmoid`),
- sigmoid gate: the default channel attention with eq. 3's gate (the chain's model before the gate's default changed).

    .venv/bin/python scripts/attention_stats_448.py --cuhk $MDBD_SHARED_DATA/cuhk-full

Each run must exist (the chain trains the first two; the third: `mdbd train --profile laptop --dataset cuhk
--data-root DIR --set spatial_gate=sigmoid`). Writes results/laptop/cuhk/tables/13_attention_stats_448.csv (and .md),
and each model's scores on the 100 test images (protocol 1, in focus positive, 1000 bootstrap resamples) as
13_full_model_scores.csv (and .md), so the forms' statistics sit beside what each model reaches. About 2 min per
model on 2 cores.
"""

from __future__ import annotations

import argparse

VARIANTS = {"default": {}, "literal": {"attention_scale": "none", "spatial_gate": "sigmoid"},
            "sigmoid gate": {"spatial_gate": "sigmoid"}}
IDS = [f"out_of_focus{n:04d}" for n in range(605, 610)]
SIZE = 448


def main() -> int:
    import pandas as pd

    from mdbd.runs.checkpoint import load_checkpoint
    from mdbd.runs.config import load_config
    from mdbd.data import open_dataset
    from mdbd.core.errors import DataError
    from mdbd.model.diagnostics import attention_statistics
    from mdbd.core.paths import display_path
    from mdbd.core.provenance import device_name
    from mdbd.evaluation.report import save_table
    from mdbd.runs.rundir import RunDir
    from mdbd.runs.scoring import evaluate_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuhk", required=True, help="Shi's dataset in the official layout (e.g. cuhk-full)")
    args = parser.parse_args()
    pairs = open_dataset("cuhk", args.cuhk, "test")
    missing = [i for i in IDS if i not in pairs.ids]
    if missing:
        raise DataError(f"{args.cuhk}: test images {missing} not found")
    samples = [pairs[pairs.ids.index(i)] for i in IDS]
    tables, scores = [], []
    for label, overrides in VARIANTS.items():
        cfg = load_config("laptop", dataset="cuhk", data_root=args.cuhk, device="cpu", **overrides)
        checkpoint = RunDir.of(cfg).checkpoint
        if not checkpoint.is_file():
            raise DataError(f"no run of the {label} variant ({overrides or 'defaults'}) at {checkpoint}; see this "
                            "script's docstring for the command that trains it")
        model, saved, meta = load_checkpoint(checkpoint, device="cpu")
        stats = attention_statistics(model, [s.image for s in samples], [s.mask for s in samples],
                                     ids=[s.id for s in samples], size=SIZE, device="cpu", variant=label,
                                     checkpoint=display_path(checkpoint), epoch=meta.get("epoch"),
                                     weights=str(getattr(model, "backbone_source", "")),
                                     device_name=device_name("cpu"), dataset="cuhk", split="test",
                                     data_root=display_path(args.cuhk), seed=saved["seed"])
        tables.append(stats)
        scored = evaluate_checkpoint(checkpoint, "cuhk", args.cuhk, "test", protocols=("sod",), bootstrap=1000).table
        scored = scored[scored["metric"].isin(["max_f", "mae"])].assign(
            variant=label, checkpoint=display_path(checkpoint), attention_scale=saved["attention_scale"],
            spatial_gate=saved["spatial_gate"], epoch=meta.get("epoch"), data_root=display_path(args.cuhk))
        scores.append(scored)
        spatial = stats[stats["module"] == "SA"].groupby("statistic")["value"].mean()
        print(f"{label}: {display_path(checkpoint)}  Z mean {spatial['z_mean']:.3f}, above 0.95 "
              f"{spatial['z_above_0.95']:.3f}, in focus {spatial['z_mean_infocus']:.3f} vs blurred "
              f"{spatial['z_mean_blurred']:.3f}")
    provenance = {"source": "trained here (laptop profile, cuhk section)", "device": "cpu",
                  "command": "scripts/attention_stats_448.py --cuhk $MDBD_SHARED_DATA/cuhk-full"}
    save_table(pd.concat(scores, ignore_index=True), "13_full_model_scores", profile="laptop", dataset="cuhk",
               title="The chain's full models with each attention form (default; eq. 1 + eq. 3 literal; default "
                     "channel attention with eq. 3's sigmoid gate) on the 100 CUHK test images, protocol 1",
               provenance=provenance)
    table = pd.concat(tables, ignore_index=True)
    save_table(table, "13_attention_stats_448", profile="laptop", dataset="cuhk",
               title=f"Attention statistics at the prediction size ({SIZE} px) of the chain's full models (default; "
                     "eq. 1 + eq. 3 literal; default channel attention with eq. 3's sigmoid gate), "
                     f"{len(IDS)} CUHK test images",
               provenance=provenance)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
