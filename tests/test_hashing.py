"""mdbd.core.hashing.stable_key, the one "sha256 of a JSON payload": it gives every key exactly what the five inline
copies it replaced gave (run folders, score files, the uint8, frozen-feature and baseline-map caches keep their
names), and every such key in the library goes through it."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from mdbd.core.hashing import stable_key
from mdbd.core.paths import REPO_ROOT

PAYLOADS = [{"b": 1, "a": [1, 2.5, "x"], "c": {"z": None, "y": True}},
            {"method": "hifst", "version": 2, "params": {"max_side": 320, "scales": (3, 7)}, "image": "ab" * 32},
            {"path": Path("/tmp/x"), "n": 3}]


def test_stable_key_is_each_replaced_formula():
    for payload in PAYLOADS:
        with_str = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        assert stable_key(payload) == with_str  # data/cache.py's (full length)
        assert stable_key(payload, 8) == with_str[:8]  # identity.py's run folders
        assert stable_key(payload, 16) == with_str[:16]  # score files, frozen-feature cache
        # baselines/run.py's map cache (32), which wrote tuples as lists
        baseline = json.dumps(payload, sort_keys=True, default=lambda v: list(v) if isinstance(v, tuple) else str(v))
        assert stable_key(payload, 32) == hashlib.sha256(baseline.encode()).hexdigest()[:32]
        if "path" not in payload:  # the copies without default= (payloads JSON holds as it is)
            plain = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
            assert stable_key(payload, 16) == plain[:16]


def test_key_order_does_not_matter():
    assert stable_key({"a": 1, "b": 2}, 8) == stable_key({"b": 2, "a": 1}, 8)


def test_no_inline_json_hash_left_in_the_library():
    """`sha256(json.dumps(...))` written out again would be a second home."""
    pattern = re.compile(r"sha256\(\s*(?:json\.dumps|text\.encode)|json\.dumps\([^\n]*sort_keys=True[^\n]*\)\.encode")
    found = []
    for path in sorted((REPO_ROOT / "mdbd").rglob("*.py")) + sorted((REPO_ROOT / "scripts").glob("*.py")):
        if path.name == "hashing.py":
            continue
        if pattern.search(path.read_text()):
            found.append(str(path.relative_to(REPO_ROOT)))
    assert found == []
