"""Datasets in one convention (mask 1 = IN FOCUS): readers, downloads, the synthetic benchmark, augmentation, cache.

Import cost stays small: torch is only loaded by `mdbd.data.torch_dataset` and `mdbd.data.augment`.
"""

from mdbd.data.readers import (DATASETS, PairDataset, Sample, folder_splits, open_dataset, read_image, read_mask,
                               read_manifest)

__all__ = ["DATASETS", "PairDataset", "Sample", "open_dataset", "folder_splits", "read_image", "read_mask",
           "read_manifest", "generate_synthetic", "ensure_synthetic", "TrainDataset", "EvalDataset", "collate_eval"]


def __getattr__(name: str):  # lazy: torch and scipy only when asked for
    if name in ("generate_synthetic", "ensure_synthetic"):
        from mdbd.data import synth  # lazy: scipy, only when the generator is asked for

        return getattr(synth, name)
    if name in ("TrainDataset", "EvalDataset", "collate_eval"):
        from mdbd.data import torch_dataset  # lazy: torch

        return getattr(torch_dataset, name)
    raise AttributeError(f"module 'mdbd.data' has no attribute {name!r}")
