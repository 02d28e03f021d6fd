"""digits: the split is a seeded partition of load_digits; a short run writes metrics and plots."""

import torch

from kutta.experiments import run as runs
from kutta.experiments.digits import DigitsData, load_split_digits

FAST = [
    "train.steps=3",
    "train.batch_size=16",
    "train.eval_every=3",
    "train.tensorboard=false",
    "model.width=8",
    "model.hidden=8",
    "solver.method=rk4",
    "solver.step_size=0.5",
]


def test_split_is_a_seeded_partition_of_the_1797_digits():
    splits = load_split_digits(DigitsData(), seed=0, dtype=torch.float32)
    sizes = {name: len(labels) for name, (_, labels) in splits.items()}
    assert sizes == {"test": 359, "val": 180, "train": 1258}
    images = torch.cat([x for x, _ in splits.values()])
    assert images.min() == 0 and images.max() == 1  # pixels 0..16 scaled
    assert len(torch.unique(images, dim=0)) > 1700  # no image used twice (a few are duplicates)
    again = load_split_digits(DigitsData(), seed=0, dtype=torch.float32)
    assert torch.equal(again["test"][1], splits["test"][1])
    other = load_split_digits(DigitsData(), seed=1, dtype=torch.float32)
    assert not torch.equal(other["test"][1], splits["test"][1])


def test_short_run_reports_both_accuracies_and_nfe(tmp_path):
    result = runs.train("digits", overrides=FAST, out=tmp_path)
    metrics = result.metrics["metrics"]
    assert 0 <= metrics["test_accuracy_ode"] <= 1 and 0 <= metrics["test_accuracy_resnet"] <= 1
    assert metrics["nfe_test"] == 8  # rk4, two steps of 0.5 over [0, 1]
    assert metrics["num_test"] == 359
    assert (tmp_path / "metrics.json").is_file()
    assert sorted(p.name for p in result.plots) == ["confusion.png", "loss.png", "nfe.png"]
    assert "ResNet" in result.summary
