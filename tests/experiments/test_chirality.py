"""chirality: the spirals turn the way their label says; a short run writes metrics and plots."""

import torch

from kutta.experiments import run as runs
from kutta.experiments.chirality import drop_points, spiral_chirality_data

FAST = [
    "data.num_series=8",
    "data.num_points=20",
    "train.steps=2",
    "train.batch_size=4",
    "train.eval_every=2",
    "train.tensorboard=false",
    "model.width=8",
]


def test_label_one_spirals_turn_clockwise_and_shrink():
    t, xy, labels = spiral_chirality_data(10, 100, 0.0, torch.Generator().manual_seed(0))
    # the sign of x dy - y dx is the direction of rotation: + anticlockwise, - clockwise
    dxy = xy[:, 1:] - xy[:, :-1]
    turning = (xy[:, :-1, 0] * dxy[..., 1] - xy[:, :-1, 1] * dxy[..., 0]).sum(1)
    assert torch.equal(turning < 0, labels == 1)
    radius = xy.norm(dim=-1)
    torch.testing.assert_close(radius, (1 / (1 + 0.5 * t)).expand(10, -1))
    assert t[-1].item() == torch.pi * 4


def test_dropping_keeps_sorted_distinct_points_of_each_series():
    t = torch.linspace(0, 1, 10, dtype=torch.float64)
    values = torch.stack([t, 2 * t], -1).expand(3, -1, -1)
    times, kept = drop_points(t, values, 0.3, torch.Generator().manual_seed(0))
    assert times.shape == (3, 7) and kept.shape == (3, 7, 2)
    assert bool((times[:, 1:] > times[:, :-1]).all())
    torch.testing.assert_close(kept[..., 0], times)  # each value stays with its own time
    assert not torch.equal(times[0], times[1])  # different points per series


def test_short_run_reports_both_accuracies(tmp_path):
    result = runs.train("chirality", overrides=FAST, out=tmp_path)
    metrics = result.metrics["metrics"]
    for name in ["full", "dropped"]:
        assert 0 <= metrics[f"test_accuracy_{name}"] <= 1
        assert metrics[f"nfe_{name}"] > 0
    assert sorted(p.name for p in result.plots) == ["loss.png", "nfe.png", "spirals.png"]
    assert "Neural CDE" in result.summary
