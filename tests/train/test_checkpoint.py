"""Checkpoints: atomic writes, weights_only loads, RNG states round-trip."""

import os
import random

import numpy as np
import pytest
import torch

from kutta.errors import InvalidArgumentError
from kutta.train.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    seed_everything(3)
    save_checkpoint({"rng": rng_state()}, tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    random.random(), np.random.rand(), torch.rand(5)  # noqa: NPY002 (move every generator on)
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    again = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert expected[0] == again[0] and expected[1] == again[1]
    torch.testing.assert_close(expected[2], again[2], rtol=0, atol=0)


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"step": 2}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_checkpoints_are_data_not_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"callable": os.getcwd}, path)  # a pickled function: refused by weights_only
    with pytest.raises(InvalidArgumentError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_missing_and_corrupt_checkpoints_are_reported(tmp_path):
    with pytest.raises(InvalidArgumentError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "torn.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(InvalidArgumentError, match="torn.pt"):
        load_checkpoint(tmp_path / "torn.pt")
