"""Config validation: unknown keys, bad values and recipe rules fail with clear messages."""

from __future__ import annotations

import pytest

from xas_train.config import apply_overrides, load_config, parse_config
from xas_train.errors import ConfigError


def base(**changes):
    cfg = {"name": "x", "recipe": "expert", "data": {"elements": ["Cu"]}}
    cfg.update(changes)
    return cfg


def test_defaults_follow_omnixas():
    cfg = parse_config(base())
    assert cfg.training.patience == 50 and cfg.training.max_epochs == 1000
    assert cfg.training.loss == "mse" and cfg.training.optimizer == "adam"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"trainig": {}}, "unknown key 'trainig'"),
        ({"training": {"zero_stage": 3}}, "training.zero_stage"),
        ({"training": {"batch_size": 0}}, "training.batch_size"),
        ({"training": {"precision": "fp8"}}, "training.precision"),
        ({"data": {"elements": ["Cu", "Ni"]}}, "recipe 'expert' trains one element"),
        ({"recipe": "tuned"}, "set init_from"),
        ({"recipe": "universal", "init_from": "x"}, "remove init_from"),
        ({"name": "has space"}, "name"),
    ],
)
def test_bad_configs_name_the_problem(changes, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(base(**changes))


def test_overrides_and_files(tmp_path):
    data = apply_overrides(base(), ["training.lr=3e-4", "model.hidden_widths=[8, 8]"])
    cfg = parse_config(data)
    assert cfg.training.lr == pytest.approx(3e-4)
    assert cfg.model.params() == {"hidden_widths": [8, 8]}
    path = tmp_path / "c.yaml"
    path.write_text("name: y\nrecipe: expert\ndata: {elements: [Ni]}\n")
    assert load_config(path, ["training.seed=3"]).training.seed == 3
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["novalue"])


def test_fingerprint_ignores_bookkeeping_only():
    a = parse_config(base())
    b = parse_config(base(output_dir="elsewhere", mlflow={"enabled": False}))
    c = parse_config(base(training={"lr": 0.1}))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
