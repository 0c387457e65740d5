"""The CPU training benchmark's grid (mdbd.bench.cpu_training): rows, ratios and the bf16 rule, at tiny sizes."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import mdbd.bench.cpu_training as ctb
from mdbd.bench.cpu_training import CpuTrainingGrid, cpu_training_rows

TINY = CpuTrainingGrid(sizes=(32,), frozen_blocks=(5, 0), precisions=("fp32", "bf16"), channels_last=(False, True),
                       runs_at_once=(1, 2), batch=2, steps=1, warmup=0)


def test_every_point_is_a_row_with_its_ratio_and_bf16_is_skipped_without_native_support(monkeypatch):
    monkeypatch.setattr(ctb, "native_bf16", lambda: (False, "no native bf16, ATen AVX2"))
    table = cpu_training_rows(TINY, log=lambda *_: None)
    assert len(table) == 1 * 2 * 2 * 2 * 2
    fp32 = table[table["precision"] == "fp32"]
    assert (fp32["images_per_s"] > 0).all()
    base = fp32[(~fp32["channels_last"]) & (fp32["runs_at_once"] == 1)]
    assert base["ratio_to_fp32_nchw"].tolist() == [1.0, 1.0]
    bf16 = table[table["precision"] == "bf16"]
    measured = bf16[bf16["images_per_s"].notna()]
    # only the smallest point (largest frozen count, NCHW, one run) is measured, to show the cost
    assert len(measured) == 1 and measured.iloc[0]["frozen_blocks"] == 5 and not measured.iloc[0]["channels_last"]
    assert bf16["images_per_s"].isna().sum() == 7 and bf16["note"].str.contains("no native bf16").sum() == 7
    assert (table["cpu_bf16"] == "no native bf16, ATen AVX2").all()


def test_a_partial_csv_holds_every_point_measured_so_far(monkeypatch, tmp_path):
    """A full grid takes tens of minutes: a run cut off keeps its measured points."""
    monkeypatch.setattr(ctb, "native_bf16", lambda: (False, "no native bf16, ATen AVX2"))
    seen = []

    def measure(point, grid):
        if len(seen) == 2:
            raise KeyboardInterrupt  # cut off at the third point
        seen.append(point)
        return 1.0

    monkeypatch.setattr(ctb, "_measure", measure)
    partial = tmp_path / "partial.csv"
    with pytest.raises(KeyboardInterrupt):
        cpu_training_rows(TINY, log=lambda *_: None, partial_csv=str(partial))
    kept = pd.read_csv(partial)
    assert len(kept) == 2 and kept["images_per_s"].tolist() == [1.0, 1.0] and kept["size"].tolist() == [32, 32]


def test_with_native_bf16_every_point_is_measured(monkeypatch):
    monkeypatch.setattr(ctb, "native_bf16", lambda: (True, "avx512_bf16"))
    grid = CpuTrainingGrid(sizes=(32,), frozen_blocks=(5,), precisions=("bf16",), channels_last=(False,),
                           runs_at_once=(1,), batch=2, steps=1, warmup=0)
    table = cpu_training_rows(grid, log=lambda *_: None)
    assert len(table) == 1 and table["images_per_s"].iloc[0] > 0
    assert math.isnan(table["ratio_to_fp32_nchw"].iloc[0])  # no fp32 point measured to compare with


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_one_step_trains_in_either_precision(precision):
    assert ctb.step_images_per_s(32, 5, precision, False, batch=2, steps=1, warmup=0, threads=1) > 0
