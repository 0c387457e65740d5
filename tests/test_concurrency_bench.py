"""The concurrency-form measurement (mdbd.bench.concurrency) at tiny sizes on CPU: every form runs or says why not.
What pays on a GPU is measured there (scripts/gpu_paper_cuhk.py), never asserted here."""

from __future__ import annotations

import time

import pytest
import torch

from mdbd.bench.concurrency import FORMS, measure_forms
from mdbd.core.errors import ConfigError

pytestmark = pytest.mark.slow


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_every_form_is_measured_or_skipped_with_its_reason(one_thread):
    table = measure_forms(["hl", "hl_ll"], "cpu", batch=2, size=32, steps=1, warmup=1, progress=False)
    assert table["form"].tolist() == list(FORMS)
    status = dict(zip(table["form"], table["status"]))
    assert status == {"sequential": "measured", "processes": "measured", "threads": "measured", "graphs": "skipped"}
    assert table.set_index("form").loc["graphs", "note"] == "CUDA only"
    measured = table[table["status"] == "measured"]
    assert (measured["images"] == 2 * 1 * 2).all() and (measured["images_per_s"] > 0).all()
    assert measured.set_index("form").loc["sequential", "speedup_vs_sequential"] == 1.0
    assert {"device", "torch_version", "code_version"} <= set(table.columns)


def test_forms_after_the_deadline_are_skipped_and_unknown_forms_refused():
    table = measure_forms(["hl"], "cpu", forms=("sequential", "threads"), deadline=time.monotonic() - 1,
                          progress=False)
    assert table["status"].tolist() == ["skipped", "skipped"]
    assert table["note"].tolist() == ["deadline reached"] * 2
    with pytest.raises(ConfigError, match="unknown form"):
        measure_forms(["hl"], "cpu", forms=("telepathy",))
