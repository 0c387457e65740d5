"""torch_threads: the count inside the block, the previous one after it, also when the block raises."""

from __future__ import annotations

import pytest
import torch

from mdbd.core.threads import torch_threads


def test_the_count_holds_inside_and_is_restored_after_an_error():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("the block fails")
    assert torch.get_num_threads() == before


def test_none_leaves_the_count_as_it_is():
    before = torch.get_num_threads()
    with torch_threads(None):
        assert torch.get_num_threads() == before
