"""xas-train inverse on the shipped default data, then `xas describe` on a measured spectrum."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from xas_train.errors import ConfigError
from xas_train.inverse import load_inverse_config, run_inverse


@pytest.fixture(scope="module")
def inverse_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inv")
    path = tmp / "inv.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "descriptors": ["OS", "CN", "NNRS"],
                "n_members": 2,
                "max_epochs": 4,
                "patience": 2,
                "model": {"d_model": 16, "global_hidden": [32], "shared_hidden": [32]},
                "baselines": ["rf"],
                "noise_levels": [0.0, 0.05],
                "output_dir": str(tmp / "runs"),
                "mlflow": False,
            }
        )
    )
    return run_inverse(load_inverse_config(path), progress=None), tmp / "runs" / "tiny"


def test_inverse_run_scores_spt_and_baselines(inverse_run):
    report, run_dir = inverse_run
    models = {r["model"] for r in report["scores"]}
    assert {"SPT ensemble", "RF", "majority / mean"} <= models
    os_all = [r for r in report["scores"] if r["descriptor"] == "OS" and r["element"] == "all"]
    assert all(0 <= r["f1_macro"] <= 1 for r in os_all)
    cov = report["coverage"]["NNRS"]
    assert cov["std_scale"] > 0 and 0 <= cov["1sigma_raw"] <= 1 and 0 <= cov["1sigma"] <= 1
    assert cov["2sigma"] >= cov["1sigma"]
    md = (run_dir / "report.md").read_text()
    assert (
        "## Robustness" in md
        and "| SPT ensemble | OS | f1_macro |" in md
        and "| RF | NNRS | r2 |" in md
    )
    noise = {r["noise"] for r in report["robustness"]}
    assert noise == {0.0, 0.05} and {r["shift_ev"] for r in report["robustness"]} == {0.0, 1.0}
    for name in ("confusion-OS.png", "parity-NNRS.png", "robustness.png", "report.md"):
        assert (run_dir / name).stat().st_size > 0
    meta = json.loads((run_dir / "model" / "model.json").read_text())
    assert meta["architecture"] == "inverse_ensemble" and meta["featurizer"]["name"] == "spectrum"
    assert meta["config"]["n_members"] == 2
    assert meta["config"]["std_scale"]["NNRS"] == cov["std_scale"]  # the checkpoint keeps it
    assert meta["config"]["member_config"]["standardise_input"] is True
    assert meta["training_data"]["dataset"] == "xas-default"  # the store name, not a path
    assert meta["training_data"]["license"]


def test_describe_a_measured_spectrum(inverse_run, shared_data, tmp_path):
    import numpy as np

    from xas_models.cli import app

    _, run_dir = inverse_run
    rec = [
        r
        for r in json.loads((shared_data / "experiment/xaslib/xaslib_K_edge.json").read_text())
        if r["element"] == "Cu" and r["formula"] == "CuO"
    ][0]
    f = tmp_path / "cuo.txt"
    np.savetxt(f, np.c_[rec["energy"], rec["mu_raw"]], header="energy mu")
    res = CliRunner().invoke(
        app, ["describe", str(f), "--model", str(run_dir / "model"), "-e", "Cu"]
    )
    assert res.exit_code == 0, res.output
    assert "OS" in res.output and "NNRS" in res.output and "E0" in res.output
    res = CliRunner().invoke(
        app, ["describe", str(f), "--model", str(run_dir / "model"), "-e", "Zn"]
    )
    assert res.exit_code == 2


def test_bad_inverse_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("n_member: 3\n")
    with pytest.raises(ConfigError, match="n_member"):
        load_inverse_config(bad)


def test_material_holdout_when_the_store_has_no_val_split(tmp_path):
    path = tmp_path / "inv.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "holdout",
                "descriptors": ["OS"],
                "val_split": None,
                "n_members": 1,
                "max_epochs": 1,
                "model": {"d_model": 8, "global_hidden": [16], "shared_hidden": [16]},
                "baselines": [],
                "noise_levels": [0.0],
                "output_dir": str(tmp_path / "runs"),
                "mlflow": False,
            }
        )
    )
    report = run_inverse(load_inverse_config(path), progress=None)
    n = report["n"]
    assert n["train"] + n["val"] == 318 and 0 < n["val"] < 60  # 10 % of the materials


def test_class_weights_favour_rare_classes():
    import numpy as np
    import torch

    from xas_models import build_model
    from xas_train.inverse import class_weights

    class Split:
        labels = {"OS": np.array([2.0] * 9 + [3.0] + [np.nan])}

    model = build_model(
        "spt",
        {"input_dim": 32, "n_bands": 2, "tasks": [{"name": "OS", "kind": "classification",
                                                   "classes": [2, 3, 4]}]},
    )  # fmt: skip
    sqrt = class_weights(Split, model, "sqrt")["OS"]
    bal = class_weights(Split, model, "balanced")["OS"]
    assert class_weights(Split, model, "none") == {}
    counts = torch.tensor([9.0, 1.0, 0.0])
    for w in (sqrt, bal):  # count-weighted mean 1, rare class heavier, unseen class 1
        assert float((w * counts).sum() / counts.sum()) == pytest.approx(1.0)
        assert w[1] > w[0]
    assert float(bal[1] / bal[0]) == pytest.approx(9.0)
    assert float(sqrt[1] / sqrt[0]) == pytest.approx(3.0)


def test_cosine_schedule_warms_up_and_decays():
    from xas_train.inverse import InverseConfig, _lr_factor

    cfg = InverseConfig(max_epochs=10, warmup_epochs=2)
    f = [_lr_factor(cfg, s, 5) for s in range(50)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False)) and f[-1] < 0.01
    assert _lr_factor(InverseConfig(lr_schedule="constant"), 40, 5) == 1.0


def test_bootstrap_resamples_whole_materials():
    import numpy as np

    from xas_eval.inverse_data import InverseData
    from xas_train.inverse import bootstrap_materials

    ids = np.array([f"m{i // 3}:{i % 3}" for i in range(30)])  # 10 materials x 3 sites
    data = InverseData(
        split="train", fidelity="FEFF", spectra=np.arange(30.0)[:, None] * np.ones((1, 8)),
        labels={"OS": np.arange(30.0)}, element=np.array(["Cu"] * 30), site_ids=ids,
        site_rows=np.arange(30), energy={"Cu": np.arange(8.0)},
        kinds={"OS": "classification"}, classes={"OS": list(range(30))},
    )  # fmt: skip
    a, b = bootstrap_materials(data, 0), bootstrap_materials(data, 0)
    assert a.site_ids.tolist() == b.site_ids.tolist()  # deterministic for a seed
    assert len(a) == 30 and set(a.site_ids) <= set(ids)
    counts = {}
    for s in a.site_ids:
        counts[s] = counts.get(s, 0) + 1
    by_material = {}
    for s, c in counts.items():
        by_material.setdefault(s.split(":")[0], set()).add(c)
    assert all(len(c) == 1 for c in by_material.values())  # every site of a drawn material
    assert len(by_material) < 10  # with replacement: some materials are left out
    assert bootstrap_materials(data, 1).site_ids.tolist() != a.site_ids.tolist()


def test_augmentation_shifts_and_adds_noise():
    import numpy as np
    import torch

    from xas_train.inverse import InverseConfig, _augment

    e = np.arange(64) * 0.25
    x = torch.from_numpy((1 / (1 + np.exp(-(e - 8.0) / 0.5)))[None].repeat(4, 0).astype("f4"))
    plain = InverseConfig()
    assert _augment(x, plain, np.random.default_rng(0), 0.25) is x  # off by default
    shift_only = InverseConfig(augment_shift_ev=1.0)
    moved = _augment(x, shift_only, np.random.default_rng(0), 0.25)
    assert moved.dtype == torch.float32 and moved.shape == x.shape
    edge = (moved > 0.5).float().argmax(dim=1) * 0.25  # edge position moves by <= 1 eV
    assert bool(((edge - 8.0).abs() <= 1.0 + 0.25).all()) and not torch.equal(moved, x)
    noisy = _augment(x, InverseConfig(augment_noise=0.05), np.random.default_rng(1), 0.25)
    again = _augment(x, InverseConfig(augment_noise=0.05), np.random.default_rng(1), 0.25)
    assert torch.equal(noisy, again) and 0 < float((noisy - x).std()) < 0.05
