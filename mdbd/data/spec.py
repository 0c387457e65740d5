"""What the data layer is told, without numpy or torch: the synthetic benchmark's sizes (a profile's `synth:` section)
and the generator's version. mdbd.runs.config builds its RunConfig from these; mdbd.data.synth generates from them."""

from __future__ import annotations

from dataclasses import dataclass

GENERATOR_VERSION = 1  # bump when the output of a given seed changes (mdbd.data.synth)


@dataclass
class SynthConfig:
    """Size of the synthetic defocus benchmark generated for a profile (the defaults are the smoke profile's)."""

    train_images: int = 24
    test_images: int = 8
    image_size: int = 96  # side of the square crops written to disk
