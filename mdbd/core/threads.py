"""torch's CPU thread count for a stretch of code, put back afterwards: one of several runs training side by side,
a baseline that is faster on one thread, a timing at a declared thread count."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch.set_num_threads(threads) inside the block (None or 0: left as it is); the previous count is restored
    on the way out, also after an error."""
    import torch

    before = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        yield
    finally:
        torch.set_num_threads(before)
