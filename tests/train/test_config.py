"""Configs: TOML in, --set overrides, unknown keys and bad values rejected with the valid keys."""

import dataclasses

import pytest

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.train.config import (
    SolverConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_toml,
    to_toml,
    valid_keys,
)


@dataclasses.dataclass
class Section:
    width: int = 4
    names: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Whole:
    section: Section = dataclasses.field(default_factory=Section)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


def test_overrides_parse_toml_values_and_bare_strings():
    config = apply_overrides(
        Whole(),
        [
            "train.lr=1e-2",
            "train.optimizer=sgd",
            "section.names=a,b",
            "train.restore_best=true",
            "train.eval_every=5",
        ],
    )
    assert config.train.lr == 0.01
    assert config.train.optimizer == "sgd"
    assert config.section.names == ["a", "b"]
    assert config.train.restore_best is True
    # the original is untouched
    assert Whole().train.lr == TrainConfig().lr


def test_ints_are_accepted_for_floats_but_not_the_reverse():
    assert apply_overrides(Whole(), ["train.lr=1"]).train.lr == 1.0
    with pytest.raises(InvalidArgumentError, match="train.steps.*expects int"):
        apply_overrides(Whole(), ["train.steps=1.5"])
    with pytest.raises(InvalidArgumentError, match="train.lr.*expects float"):
        apply_overrides(Whole(), ["train.lr=fast"])


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(UnknownNameError) as info:
        apply_overrides(Whole(), ["train.learning_rate=1"])
    assert "train.lr" in str(info.value) and "section.width" in str(info.value)
    with pytest.raises(UnknownNameError, match="section.width"):
        config_from_dict(Whole, {"section": {"widht": 3}})


@pytest.mark.parametrize("bad", ["train.lr", "=3", "train=3", ""])
def test_malformed_overrides_are_rejected(bad):
    with pytest.raises(InvalidArgumentError):
        apply_overrides(Whole(), [bad])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.optimizer=adamm", "valid optimizers"),
        ("train.lr=-1", "train.lr must be positive"),
        ("train.steps=0", "train.steps must be >= 1"),
        ("train.patience=3", "eval_every"),
        ("train.device=tpu", "train.device"),
    ],
)
def test_bad_values_are_explained(override, message):
    with pytest.raises(InvalidArgumentError, match=message):
        apply_overrides(Whole(), [override])


def test_solver_config_checks_gradient_mode():
    with pytest.raises(UnknownNameError, match="backprop"):
        SolverConfig(gradient="magic")
    assert SolverConfig(step_size=0.1).odeint_kwargs()["options"] == {"step_size": 0.1}
    assert SolverConfig().odeint_kwargs()["options"] is None


def test_toml_round_trip(tmp_path):
    config = apply_overrides(Whole(), ["section.names=x,y", "train.lr=0.003", "train.device=cpu"])
    path = tmp_path / "config.toml"
    path.write_text(to_toml({"experiment": "demo", **config_to_dict(config)}))
    data = load_toml(path)
    assert data.pop("experiment") == "demo"
    assert config_from_dict(Whole, data) == config


def test_load_toml_errors_name_the_file(tmp_path):
    with pytest.raises(InvalidArgumentError, match="not found"):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1")
    with pytest.raises(InvalidArgumentError, match="bad.toml: invalid TOML"):
        load_toml(bad)


def test_valid_keys_are_dotted_paths():
    keys = valid_keys(Whole)
    assert "section.width" in keys and "train.seed" in keys and "section" not in keys
