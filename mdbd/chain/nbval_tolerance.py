"""nbval's comparison of the reference notebooks, with a stated tolerance for printed decimal numbers.

nbval compares a re-run cell's outputs with the reference's as strings (after tests/nbval/sanitize.cfg). Training
results printed to four or more digits then differ in their last digits from one CPU to another (another SIMD width
picks other float kernels: 5.4091e-01 for 5.4083e-01), so a digit-for-digit comparison only held with the kernels
pinned to AVX2, and not at all on a CPU without AVX2. With `install()` (tests/nbval/conftest.py calls it) two outputs
also agree when they differ only in decimal numbers and every such pair agrees to FLOAT_TOLERANCE:

    |a - b| <= max(half a unit of the third significant digit of the larger, one unit of the last digit printed)

so 0.54083 and 0.54091 agree (their difference, 8e-5, is under half of 1e-3), 0.5408 and 0.5418 do not (a changed
third significant digit), and 0.729 and 0.730 agree (a value printed to three digits can flip its last one on a
difference of 1e-5). Everything else is still compared exactly: the text around the numbers, integers (counts,
sizes, epochs, ids), signs, the number of numbers, and any decimal that differs by more than the tolerance.
"""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from typing import Any, Callable

#: a decimal number as printed: 0.5408, 12.5, 4.00e-04, 1e-05 (not part of a word, a version or a path: "seed0",
#: "0.1.0" are left to the exact comparison); its sign stays in the surrounding text, compared exactly
FLOAT = re.compile(r"(?<![\w.])(\d+\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)(?![\w.])")
FLOAT_TOLERANCE = "half a unit of the third significant digit, or one unit of the last digit printed"


def _last_place(token: str) -> Decimal:
    return Decimal(1).scaleb(Decimal(token).as_tuple().exponent)


def floats_agree(a: str, b: str) -> bool:
    """Whether two printed decimals agree to FLOAT_TOLERANCE."""
    if a == b:
        return True
    x, y = Decimal(a), Decimal(b)
    top = max(abs(x), abs(y))
    third = Decimal(1).scaleb(top.adjusted() - 2) if top else Decimal(0)
    return abs(x - y) <= max(third / 2, _last_place(a), _last_place(b))


def texts_agree(reference: str, output: str) -> bool:
    """Whether two (sanitised) output strings are equal but for decimal numbers that agree to FLOAT_TOLERANCE."""
    if reference == output:
        return True
    ref_parts, out_parts = FLOAT.split(reference), FLOAT.split(output)
    if len(ref_parts) != len(out_parts) or ref_parts[0::2] != out_parts[0::2]:
        return False
    return all(floats_agree(a, b) for a, b in zip(ref_parts[1::2], out_parts[1::2]))


def _strings(outputs: list[Any]) -> dict[str, list[tuple[Any, str]]]:
    """The compared strings of a cell's outputs grouped as nbval groups them (a stream by its name, data by its MIME
    type, in output order), each as (container, key) so that it can be replaced."""
    found: dict[str, list[tuple[Any, str]]] = {}
    for out in outputs:
        if out.get("output_type") == "stream":
            found.setdefault(out.get("name", "stream"), []).append((out, "text"))
        for mime, value in (out.get("data") or {}).items():
            if isinstance(value, str):
                found.setdefault(mime, []).append((out["data"], mime))
    return found


def tolerate_float_digits(test: list[Any], ref: list[Any], sanitize: Callable[[str], str]) -> list[Any]:
    """A copy of the reference outputs `ref` in which each string that agrees with its counterpart in `test` (both
    sanitised, texts_agree) is replaced by that counterpart, so that nbval's exact comparison passes it; every other
    string is kept as it is, and nbval reports it as it always has."""
    ref = copy.deepcopy(ref)
    test_strings = _strings(test)
    for key, ref_places in _strings(ref).items():
        test_places = test_strings.get(key, [])
        if len(test_places) != len(ref_places):
            continue  # nbval reports the differing number of outputs
        for (ref_box, ref_key), (test_box, test_key) in zip(ref_places, test_places):
            ref_text, test_text = ref_box[ref_key], test_box[test_key]
            if ref_text != test_text and texts_agree(sanitize(ref_text), sanitize(test_text)):
                ref_box[ref_key] = test_text
    return ref


def install() -> None:
    """Make nbval's IPyNbCell.compare_outputs apply tolerate_float_digits first (once; a no-op without nbval)."""
    try:
        from nbval.plugin import IPyNbCell
    except ImportError:
        return
    original = IPyNbCell.compare_outputs
    if getattr(original, "tolerates_float_digits", False):
        return

    def compare_outputs(self, test, ref, skip_compare=None):
        # nbval coalesces the streams of both sides before this call, as tolerate_float_digits expects
        return original(self, test, tolerate_float_digits(test, ref, self.sanitize), skip_compare)

    compare_outputs.tolerates_float_digits = True
    IPyNbCell.compare_outputs = compare_outputs
