"""Issue 13, item 4 (open): a PROBE, not the fix. Does a spatial-attention gate whose uniform level cannot move stay
unsaturated? In the chain's trained models Z = sigmoid(logits) is 0.999 almost everywhere (docs/model.md, SA row):
the logits' uniform part (~5.5) comes from conv2's weights on post-ReLU inputs. Here the logits are centred per
image (their spatial mean subtracted) by patching SpatialAttention in this process only, MultiANet (cosine
attention) is trained as scripts/attention_scale_selection.py trains it (laptop profile's cuhk settings, 4 epochs,
0001-0544) and scored on the held-out 0545-0604 (protocol 1, in focus positive), with Z's statistics at 448 px on
three of those images. Compare with 13_attention_scale_selection's cosine row.

    .venv/bin/python scripts/spatial_gate_probe.py      # needs data/cuhk-holdout (made by attention_scale_selection.py)

Prints only; the run goes to results/runs/laptop/spatial-gate-probe/ (its identity does not know about the patch,
so it lives apart from every run the study reuses). A declared option for this belongs in mdbd.model.attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def centred_attention_map(self, high: torch.Tensor, size) -> torch.Tensor:
    logits = self.conv2(F.relu(self.conv1(high)))
    logits = logits - logits.mean(dim=(-2, -1), keepdim=True)  # no uniform component: the gate can only redistribute
    logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    return torch.sigmoid(logits)


def main() -> int:
    import mdbd.model.attention as attention
    from mdbd.checkpoint import load_checkpoint
    from mdbd.config import load_config
    from mdbd.data import open_dataset
    from mdbd.errors import DataError
    from mdbd.model.diagnostics import attention_statistics
    from mdbd.paths import DATA_DIR, RESULTS_DIR
    from mdbd.scoring import evaluate_checkpoint
    from mdbd.train import train

    attention.SpatialAttention.attention_map = centred_attention_map
    root = DATA_DIR / "cuhk-holdout"
    if not root.is_dir():
        raise DataError(f"{root}: no held-out split; run scripts/attention_scale_selection.py --cuhk DIR first")
    cfg = load_config("laptop", dataset="cuhk", data_root=str(root), attention_scale="cosine", device="cpu", epochs=4,
                      run_dir=str(RESULTS_DIR / "runs" / "laptop" / "spatial-gate-probe" / "multianet-centred-seed0"))
    result = train(cfg, resume=True, progress=True)
    scores = evaluate_checkpoint(result.checkpoint, "cuhk", root, "test", protocols=("sod",), bootstrap=1000)
    print(scores.table[scores.table["metric"].isin(["max_f", "mae"])][["metric", "value", "ci_low", "ci_high"]]
          .to_string(index=False))
    model, _, _ = load_checkpoint(result.checkpoint, device="cpu")
    pairs = open_dataset("cuhk", root, "test")
    samples = [pairs[i] for i in range(3)]
    stats = attention_statistics(model, [s.image for s in samples], [s.mask for s in samples],
                                 ids=[s.id for s in samples], size=448, device="cpu")
    print(stats[stats["module"] == "SA"].groupby("statistic")["value"].mean().round(4).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
