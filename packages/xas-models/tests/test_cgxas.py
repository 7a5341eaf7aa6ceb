"""CGXAS crystal-graph network: config, shapes, invariances, batching, overfit, checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from xas_features.graphs import CrystalGraphConfig, build_crystal_graph, collate_graphs
from xas_models import CheckpointMeta, EnergyGrid, FeaturizerInfo, ModelError
from xas_models.cgxas import CGXAS
from xas_models.checkpoint import load_checkpoint, save_checkpoint

GRAPH_CONFIG = CrystalGraphConfig(cutoff=6.0, max_neighbors=12, max_z=30, include_ties=True)
K = 24
EDGE_FEATURES = ["gaussian", "plane_wave", "both"]


def make_model(seed: int = 0, **over) -> CGXAS:
    cfg = {
        "node_dim": GRAPH_CONFIG.node_dim,
        "output_dim": K,
        "hidden_dim": 16,
        "n_conv": 3,
        "n_gaussians": 12,
        "cutoff": GRAPH_CONFIG.cutoff,
        "n_plane_waves": 8,
        "mlp_hidden": [32],
        "elements": ["Fe", "Cu"],
    }
    cfg.update(over)
    torch.manual_seed(seed)
    model = CGXAS.from_config(cfg)
    # larger output biases so the ReLU head is active: the invariance checks are not trivial
    with torch.no_grad():
        model.head[-2].bias.add_(1.0)
    return model.eval()


def fe_oxide() -> Structure:
    """A triclinic Fe2O3-like cell with generic coordinates (no distance ties)."""
    lattice = Lattice.from_parameters(4.1, 4.6, 5.3, 84.0, 97.0, 103.0)
    species = ["Fe", "Fe", "O", "O", "O"]
    coords = [[0.02, 0.05, 0.11], [0.53, 0.47, 0.61], [0.27, 0.81, 0.33], [0.71, 0.19, 0.87],
              [0.38, 0.36, 0.02]]  # fmt: skip
    return Structure(lattice, species, coords)


def cu_oxide() -> Structure:
    """A monoclinic CuO-like cell with generic coordinates."""
    lattice = Lattice.monoclinic(4.7, 3.4, 5.1, 99.5)
    return Structure(lattice, ["Cu", "Cu", "O", "O"],
                     [[0.25, 0.27, 0.01], [0.76, 0.74, 0.52], [0.02, 0.42, 0.26],
                      [0.49, 0.08, 0.77]])  # fmt: skip


def predict(model: CGXAS, structure: Structure, sites: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(build_crystal_graph(structure, sites, GRAPH_CONFIG))


def test_shape_nonnegative_and_config_round_trip():
    model = make_model()
    out = predict(model, fe_oxide(), [0, 1])
    assert out.shape == (2, K)
    assert bool((out >= 0).all()) and float(out.max()) > 0
    assert not torch.allclose(out[0], out[1])  # the two Fe sites differ
    again = CGXAS.from_config(model.config_dict())
    assert again.config == model.config
    assert model.config_dict()["norm"] == "layer"


def test_no_absorbers_gives_empty():
    out = predict(make_model(), fe_oxide(), [])
    assert out.shape == (0, K)


def test_unknown_config_key():
    cfg = make_model().config_dict() | {"n_layers": 3}
    with pytest.raises(ModelError, match="unknown key 'n_layers'.*allowed keys: node_dim"):
        CGXAS.from_config(cfg)


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        ("edge_features", "bessel", "edge_features.*'gaussian', 'plane_wave', 'both'"),
        ("norm", "group", "norm.*'layer', 'batch'"),
        ("elements", ["Fe", "Xx"], "elements.*unknown element symbol"),
        ("elements", [], "elements.*non-empty"),
    ],
)
def test_bad_config_values(key, value, pattern):
    cfg = make_model().config_dict() | {key: value}
    with pytest.raises(ModelError, match=pattern):
        CGXAS.from_config(cfg)


def test_missing_key():
    with pytest.raises(ModelError, match="missing key 'elements'"):
        CGXAS.from_config({"node_dim": 10})


def test_unknown_absorber_element():
    model = make_model(elements=["Cu"])
    with pytest.raises(ModelError, match=r"absorber element\(s\) \['Fe'\].*\['Cu'\]"):
        predict(model, fe_oxide(), [0])
    with pytest.raises(ModelError, match=r"\['O'\]"):
        predict(model, cu_oxide(), [0, 2])


def test_wrong_node_dim():
    model = make_model(node_dim=GRAPH_CONFIG.node_dim + 1)
    with pytest.raises(ModelError, match="node features of shape"):
        predict(model, fe_oxide(), [0])


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _supercell_copies(original: Structure, supercell: Structure, site: int) -> list[int]:
    """Indices of the supercell sites that are lattice translates of ``original[site]``."""
    frac = original.lattice.get_fractional_coords(supercell.cart_coords - original[site].coords)
    same = np.all(np.abs(frac - np.rint(frac)) < 1e-6, axis=1)
    return [i for i in np.flatnonzero(same) if supercell[i].specie == original[site].specie]


@pytest.mark.parametrize("edge_features", EDGE_FEATURES)
def test_invariances(edge_features):
    rng = np.random.default_rng(7)
    model = make_model(edge_features=edge_features)
    base = fe_oxide()
    site = 1
    ref = predict(model, base, [site])[0]
    assert float(ref.max()) > 0
    tol = {"atol": 1e-5, "rtol": 1e-5}

    # rotation of lattice and coordinates (fractional coordinates unchanged)
    rot = _random_rotation(rng)
    rotated = Structure(Lattice(base.lattice.matrix @ rot.T), base.species, base.frac_coords)
    assert not np.allclose(rotated.cart_coords, base.cart_coords)
    torch.testing.assert_close(predict(model, rotated, [site])[0], ref, **tol)

    # translation of every site (wrapped back into the cell)
    moved = base.copy()
    moved.translate_sites(list(range(len(base))), [0.7, -1.3, 2.1], frac_coords=False)
    torch.testing.assert_close(predict(model, moved, [site])[0], ref, **tol)

    # permutation of the sites
    perm = rng.permutation(len(base))
    permuted = Structure.from_sites([base[int(p)] for p in perm])
    new_site = int(np.flatnonzero(perm == site)[0])
    torch.testing.assert_close(predict(model, permuted, [new_site])[0], ref, **tol)

    # 2x1x1 supercell: both copies of the absorber give the reference spectrum
    supercell = base.make_supercell([2, 1, 1], in_place=False)
    copies = _supercell_copies(base, supercell, site)
    assert len(copies) == 2
    out = predict(model, supercell, copies)
    torch.testing.assert_close(out, ref.expand(2, -1), **tol)

    # and a different site does give a different spectrum
    assert not torch.allclose(predict(model, base, [0])[0], ref, atol=1e-3)


def test_edge_features_differ():
    models = [make_model(edge_features=ef) for ef in EDGE_FEATURES]
    assert [m.config.edge_dim for m in models] == [12, 8, 20]
    graph = build_crystal_graph(fe_oxide(), [0], GRAPH_CONFIG)
    feats = [m.edge_basis(graph.edge_dist) for m in models]
    assert [f.shape[1] for f in feats] == [12, 8, 20]
    torch.testing.assert_close(feats[2], torch.cat(feats[:2], dim=1))
    assert bool((feats[0] > 0).all()) and bool((feats[0] <= 1).all())
    assert bool((feats[1].abs() <= 1).all())
    r = graph.edge_dist[0]
    expected = torch.sin(torch.pi * r / GRAPH_CONFIG.cutoff) / (torch.pi * r / GRAPH_CONFIG.cutoff)
    torch.testing.assert_close(feats[1][0, 0], expected)  # j0(k_1 r), k_1 = pi / cutoff


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_batch_equals_single(norm):
    model = make_model(norm=norm, edge_features="both")
    if norm == "batch":  # non-trivial running statistics
        model.train()
        with torch.no_grad():
            model(build_crystal_graph(fe_oxide(), [0], GRAPH_CONFIG))
        model.eval()
    g1 = build_crystal_graph(fe_oxide(), [0, 1], GRAPH_CONFIG)
    g2 = build_crystal_graph(cu_oxide(), [1], GRAPH_CONFIG)
    with torch.no_grad():
        alone = torch.cat((model(g1), model(g2)))
        batched = model(collate_graphs([g1, g2]))
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_forward_average():
    model = make_model()
    g1 = build_crystal_graph(fe_oxide(), [0, 1], GRAPH_CONFIG)
    g2 = build_crystal_graph(cu_oxide(), [0, 1], GRAPH_CONFIG)
    batch = collate_graphs([g1, g2])
    with torch.no_grad():
        sites = model(batch)
        mean, symbols = model.forward_average(batch)
    assert symbols == ["Fe", "Cu"]
    assert mean.shape == (2, K)
    torch.testing.assert_close(mean[0], sites[:2].mean(0))
    torch.testing.assert_close(mean[1], sites[2:].mean(0))


def rse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean(torch.sum((pred - target) ** 2, 1) / torch.sum(target**2, 1))


def test_overfit_two_structures():
    model = make_model(seed=3, edge_features="both")
    model.train()
    batch = collate_graphs(
        [
            build_crystal_graph(fe_oxide(), [0], GRAPH_CONFIG),
            build_crystal_graph(cu_oxide(), [0], GRAPH_CONFIG),
        ]
    )
    grid = torch.linspace(0, 1, K)
    target = torch.stack(
        [
            1 / (1 + torch.exp(-(grid - 0.3) * 30))
            + 0.5 * torch.exp(-(((grid - 0.4) / 0.05) ** 2)),
            1 / (1 + torch.exp(-(grid - 0.5) * 20))
            + 0.8 * torch.exp(-(((grid - 0.6) / 0.08) ** 2)),
        ]
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        first = float(rse(model(batch), target))
    for _ in range(80):
        opt.zero_grad()
        loss = rse(model(batch), target)
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = float(rse(model(batch), target))
    print(f"overfit RSE {first:.4f} -> {last:.4f}")
    assert last < first / 5, (first, last)


def test_init_output_starts_every_point_at_the_mean_spectrum():
    torch.manual_seed(0)
    cfg = make_model().config_dict()
    fresh = CGXAS.from_config(cfg).eval()
    batch = build_crystal_graph(fe_oxide(), [0, 1], GRAPH_CONFIG)
    with torch.no_grad():
        dead = float((fresh(batch) == 0).float().mean())
    mean = torch.linspace(0.2, 1.5, K)
    fresh.init_output(mean)
    with torch.no_grad():
        out = fresh(batch)
    assert dead > 0.2  # a default init leaves many ReLU outputs at zero (no gradient)
    assert bool((out > 0).all())  # after init_output every output point is active
    assert float(torch.abs(out - mean).max()) < 0.5
    with pytest.raises(ModelError, match="points"):
        fresh.init_output(torch.ones(K + 1))


def test_checkpoint_round_trip(tmp_path):
    model = make_model(seed=5, edge_features="plane_wave", norm="batch")
    graph = build_crystal_graph(cu_oxide(), [0, 1], GRAPH_CONFIG)
    model.train()
    with torch.no_grad():
        model(graph)  # non-trivial BatchNorm running statistics
    model.eval()
    meta = CheckpointMeta(
        energy_grid=EnergyGrid(start=-10.0, step=2.0, n_points=K),
        elements=["Fe", "Cu"],
        edge="K",
        fidelity="FEFF",
        featurizer=FeaturizerInfo(name="crystal-graph", version="1", key="g"),
        training_data={"dataset": "tiny"},
        metrics={"rse": 0.1},
    )
    save_checkpoint(tmp_path / "ckpt", model, meta)
    loaded, loaded_meta = load_checkpoint(tmp_path / "ckpt")
    assert isinstance(loaded, CGXAS)
    assert loaded_meta.architecture == "cgxas"
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded(graph), model(graph))


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_autocast_bf16_keeps_sums_norms_and_output_in_fp32(norm):
    """Under bf16 autocast with fp32 weights (the trainer's mixed precision) the model runs,
    returns fp32 spectra close to the fp32 ones and fp32 gradients; a model cast to bf16 as a
    whole (buffers included) runs in bf16."""
    model = make_model(norm=norm, edge_features="both").train()
    batch = collate_graphs(
        [
            build_crystal_graph(fe_oxide(), [0, 1], GRAPH_CONFIG),
            build_crystal_graph(cu_oxide(), [1], GRAPH_CONFIG),
        ]
    )
    ref = model(batch)
    with torch.autocast("cpu", torch.bfloat16):
        out = model(batch)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=0.03 * float(ref.abs().max()), rtol=0)
    out.sum().backward()
    assert {p.grad.dtype for p in model.parameters() if p.grad is not None} == {torch.float32}
    assert model.bfloat16()(batch).dtype == torch.bfloat16
