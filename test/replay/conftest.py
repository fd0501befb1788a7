"""Fixtures for the replay tests: tiny checkpoints and small SynthStreet bags."""
from __future__ import annotations

from pathlib import Path

import pytest

from replay_helpers import scored_samples
from panoptic_ros.tiny_models import write_tiny_checkpoint

from panoptic_ros.synthstreet.bag import write_bag


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("replay_weights")
    return {kind: write_tiny_checkpoint(directory, kind) for kind in ("ciae", "panonet")}


@pytest.fixture(scope="session")
def scored_bag(tmp_path_factory, tiny) -> Path:
    """Six 64x128 SynthStreet frames whose ground truth makes the tiny CIAE's PQ non-trivial."""
    path = tmp_path_factory.mktemp("replay_bags") / "scored"
    write_bag(path, scored_samples(tiny["ciae"], 6), rate_hz=10.0)
    return path
