"""Checkpoint round-trip, atomic write, refusals and the model card."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from xas_models import (
    CheckpointMeta,
    EnergyGrid,
    FeaturizerInfo,
    ModelError,
    XASBlock,
    load_checkpoint,
    save_checkpoint,
)

GRID = {"start": -5.0, "step": 0.25, "n_points": 20}


def make_model(**over):
    cfg = {"input_dim": 6, "output_dim": 20, "hidden_widths": [8, 8], "dropout": 0.2}
    cfg.update(over)
    return XASBlock.from_config(cfg)


def make_meta(**over):
    kw = dict(
        energy_grid=EnergyGrid(**GRID),
        elements=["Cu"],
        edge="K",
        fidelity="FEFF",
        featurizer=FeaturizerInfo(name="m3gnet", version="1.0", key="abc123"),
        training_data={"dataset": "mp-cu-feff", "n_spectra": 1234},
        metrics={"mse": 0.00123, "r2": 0.95},
    )
    kw.update(over)
    return CheckpointMeta(**kw)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(1)
    model = make_model()
    # give BatchNorm non-trivial running stats
    model.train()
    model(torch.randn(32, 6))
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, model, make_meta())
    return folder, model


def test_round_trip_identical(saved):
    folder, model = saved
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "model.json",
        "model.safetensors",
    ]
    loaded, meta = load_checkpoint(folder, expected_featurizer="m3gnet@1.0", expected_grid=GRID)
    assert not loaded.training
    model.eval()
    x = torch.randn(5, 6)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert meta.architecture == "xasblock"
    assert meta.config == model.config_dict()
    assert meta.package_versions["xas-models"] == "0.1.0"
    assert meta.package_versions["torch"] == torch.__version__
    raw = json.loads((folder / "model.json").read_text())
    assert raw["format_version"] == 1
    assert raw["energy_grid"] == GRID
    assert raw["featurizer"] == {"name": "m3gnet", "version": "1.0", "key": "abc123"}


def test_grid_within_tolerance_accepted(saved):
    folder, _ = saved
    load_checkpoint(folder, expected_grid={**GRID, "start": GRID["start"] + 5e-7})


def test_atomic_refuses_existing(saved, tmp_path):
    folder, _ = saved
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ModelError, match="already exists.*overwrite=True"):
        save_checkpoint(folder, make_model(hidden_widths=[4]), make_meta())
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp leftovers


def test_overwrite_replaces(saved, tmp_path):
    folder, _ = saved
    save_checkpoint(folder, make_model(hidden_widths=[4]), make_meta(), overwrite=True)
    loaded, meta = load_checkpoint(folder)
    assert meta.config["hidden_widths"] == [4]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_model_card(saved):
    card = (saved[0] / "README.md").read_text()
    for text in ("xasblock", "| mse | 0.00123 |", "| r2 | 0.95 |", "m3gnet", "n_points=20",
                 "mp-cu-feff", "hidden_widths", "Cu"):  # fmt: skip
        assert text in card


def test_refuse_featurizer_mismatch(saved):
    with pytest.raises(ModelError, match="featurizer mismatch: expected 'soap'.*'m3gnet@1.0'"):
        load_checkpoint(saved[0], expected_featurizer="soap")
    with pytest.raises(ModelError, match="expected 'm3gnet@2.0'"):
        load_checkpoint(saved[0], expected_featurizer="m3gnet@2.0")


@pytest.mark.parametrize(
    "grid",
    [{**GRID, "start": -5.001}, {**GRID, "step": 0.3}, {**GRID, "n_points": 21}],
)
def test_refuse_grid_mismatch(saved, grid):
    with pytest.raises(ModelError, match="energy grid mismatch: expected .* checkpoint has"):
        load_checkpoint(saved[0], expected_grid=grid)


def _edit_meta(folder, **changes):
    path = folder / "model.json"
    raw = json.loads(path.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))


def test_refuse_unknown_architecture(saved):
    _edit_meta(saved[0], architecture="transformer")
    with pytest.raises(ModelError, match="unknown model architecture 'transformer'.*'xasblock'"):
        load_checkpoint(saved[0])


def test_refuse_format_version(saved):
    _edit_meta(saved[0], format_version=2)
    with pytest.raises(ModelError, match="format_version 2.*reads only \\[1\\]"):
        load_checkpoint(saved[0])


@pytest.mark.parametrize("name", ["model.json", "model.safetensors"])
def test_refuse_missing_file(saved, name):
    (saved[0] / name).unlink()
    with pytest.raises(ModelError, match=f"missing '{name}'"):
        load_checkpoint(saved[0])


def test_refuse_missing_folder(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")


def test_refuse_weights_of_other_config(saved):
    folder, _ = saved
    _edit_meta(folder, config={**make_model().config_dict(), "hidden_widths": [8, 16]})
    with pytest.raises(ModelError, match="do not fit architecture 'xasblock'.*shape mismatches"):
        load_checkpoint(folder)


def test_refuse_weights_of_other_architecture(saved):
    folder, _ = saved
    save_file({"encoder.weight": torch.zeros(3, 3)}, str(folder / "model.safetensors"))
    with pytest.raises(ModelError, match="missing keys.*unexpected keys \\['encoder.weight'\\]"):
        load_checkpoint(folder)


def test_refuse_corrupt_weights(saved):
    (saved[0] / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="cannot read weights"):
        load_checkpoint(saved[0])


def test_save_refuses_grid_not_matching_output(tmp_path):
    with pytest.raises(ModelError, match="20 energy points.*n_points=141"):
        save_checkpoint(
            tmp_path / "c",
            make_model(),
            make_meta(energy_grid=EnergyGrid(start=0, step=1, n_points=141)),
        )
    assert not (tmp_path / "c").exists()


def test_weights_are_safetensors(saved):
    state = load_file(str(saved[0] / "model.safetensors"))
    assert "net.0.weight" in state
