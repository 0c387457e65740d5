"""`mdbd weights export`: a compact copy of the verified Oxford weights that loads as a backbone file."""

import pytest
import torch

from mdbd.cli import main
from mdbd.core.weights import oxford_cache_path, verify_oxford_cache


@pytest.fixture
def oxford_cache():
    if not verify_oxford_cache().ok:
        pytest.skip(f"no verified Oxford cache at {oxford_cache_path()} (`mdbd weights fetch --source oxford`)")
    return oxford_cache_path()


def test_fp16_export_loads_and_matches_the_cache(oxford_cache, tmp_path):
    from mdbd.model import build_model

    out = tmp_path / "w16.pth"
    assert main(["weights", "export", "--dtype", "float16", "--out", str(out)]) == 0
    state = torch.load(out, weights_only=True)
    assert len(state) == 26 and all(v.dtype == torch.float16 for v in state.values())
    assert out.stat().st_size < 0.55 * oxford_cache.stat().st_size
    exported = build_model("hl", backbone_weights=str(out))
    reference = build_model("hl", backbone_weights="oxford")
    for a, b in zip(exported.backbone.parameters(), reference.backbone.parameters()):
        assert a.dtype == torch.float32  # loaded back into the fp32 model
        torch.testing.assert_close(a, b, rtol=1e-3, atol=2e-2)  # fp16 rounding of the folded conv1_1 (|w| ~ 60)


def test_export_refuses_an_unverified_cache(tmp_path):
    assert main(["weights", "export", "--out", str(tmp_path / "w.pth"), "--data-dir", str(tmp_path)]) == 2
    assert not (tmp_path / "w.pth").exists()
