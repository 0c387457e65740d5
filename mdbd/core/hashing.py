"""The one way mdbd names something by its content: `stable_key(payload, length)`, the sha256 of a JSON payload.

Run folders (mdbd.runs.identity), score files (mdbd.chain.stages.common), the uint8 and frozen-feature caches and the
baselines' map cache are all named this way; the value depends only on the payload's content (key order does not
matter), so it is the same on every machine and in every Python session. Changing how a key is computed renames
every run folder and cache: tests/test_identity.py pins the run folders' hashes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(payload: Any) -> str:
    """`payload` as JSON with sorted keys and the default separators; a value JSON cannot hold (a Path, a numpy
    scalar) is written as its str()."""
    return json.dumps(payload, sort_keys=True, default=str)


def stable_key(payload: Any, length: int | None = None) -> str:
    """Hex sha256 of canonical_json(payload), its first `length` characters (all 64 when None)."""
    digest = hashlib.sha256(canonical_json(payload).encode()).hexdigest()
    return digest if length is None else digest[:length]
