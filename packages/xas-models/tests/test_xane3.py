"""XANE(3): shapes, config errors, E(3)/permutation/supercell invariance, ablation switches,
equivariant layer norm, the loss, and the checkpoint round trip. Tiny irreps keep it fast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from e3nn import o3
from pymatgen.core import Lattice, Structure

from xas_features.graphs import CrystalGraphConfig, build_crystal_graph, collate_graphs
from xas_models.errors import ModelError
from xas_models.xane3 import XANE3, EquivariantLayerNorm, xane3_loss

SWITCHES = (
    "layer_norm",
    "gate",
    "residual",
    "attention_pool",
    "absorber_norms",
    "background",
    "e0_head",
)
TINY = {
    "n_layers": 2,
    "irreps_hidden": "4x0e+2x1o+2x2e",
    "n_radial": 4,
    "radial_hidden": 8,
    "r_max": 3.5,
    "max_z": 30,
    "embed_dim": 4,
    "readout_hidden": 16,
    "output_dim": 20,
    "n_gaussians_out": 20,
    "energy_min": 0.0,
    "energy_max": 20.0,
}
# no truncation: the graph is exactly invariant (see xas_features.graphs)
GRAPH = CrystalGraphConfig(cutoff=3.5, max_neighbors=None, max_z=30)


def tiny(seed: int = 0, **over) -> XANE3:
    torch.manual_seed(seed)
    return XANE3.from_config({**TINY, **over})


def structure() -> Structure:
    """A low-symmetry 3-atom cell (no ties matter: max_neighbors=None)."""
    lattice = Lattice.from_parameters(3.1, 3.4, 3.7, 85.0, 95.0, 100.0)
    frac = [[0.0, 0.0, 0.0], [0.48, 0.53, 0.41], [0.21, 0.77, 0.62]]
    return Structure(lattice, ["Fe", "O", "Ti"], frac)


def graph(s: Structure, absorbers: list[int]):
    return collate_graphs([build_crystal_graph(s, absorbers, GRAPH)])


def predict(model: XANE3, batch) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        out = model(batch)
    return out["spectrum"], out["e0"]


def find_site(s: Structure, cart: np.ndarray, species: str) -> int:
    for i, site in enumerate(s):
        if site.species_string == species and np.allclose(site.coords, cart, atol=1e-6):
            return i
    raise AssertionError("site not found")


def test_shapes_and_rows():
    model = tiny()
    s = structure()
    batch = collate_graphs(
        [build_crystal_graph(s, [0, 2], GRAPH), build_crystal_graph(s, [1], GRAPH)]
    )
    spectrum, e0 = predict(model, batch)
    assert spectrum.shape == (3, 20) and e0.shape == (3,)
    assert torch.isfinite(spectrum).all()
    # rows follow absorber_mask.nonzero(): row 2 (graph 1, site 1) equals site 1 alone
    alone, _ = predict(model, graph(s, [1]))
    torch.testing.assert_close(spectrum[2:3], alone, atol=1e-5, rtol=1e-5)
    assert predict(tiny(e0_head=False), batch)[1] is None
    # a single Data (no .batch) works too
    single = predict(model, build_crystal_graph(s, [0], GRAPH))[0]
    torch.testing.assert_close(single, spectrum[0:1], atol=1e-5, rtol=1e-5)


def test_unknown_key_and_bad_value():
    with pytest.raises(ModelError, match="unknown key 'n_layer'"):
        XANE3.from_config({"n_layer": 3})
    with pytest.raises(ModelError, match="radial_basis"):
        XANE3.from_config({"radial_basis": "chebyshev"})
    with pytest.raises(ModelError, match="irreps_hidden"):
        XANE3.from_config({"irreps_hidden": "4x1o"})


def test_config_round_trip():
    model = tiny(radial_basis="gaussian")
    again = XANE3.from_config(model.config_dict())
    assert again.config_dict() == model.config_dict()


def test_invariance_all_switches_on():
    model = tiny(seed=3).double()
    s = structure()
    ref_spec, ref_e0 = predict(model, graph(s, [0]))
    assert ref_spec.abs().max() > 1e-3  # a non-trivial output
    # geometry matters (the test is not trivially satisfied)
    moved_one = s.copy()
    moved_one.translate_sites([1], [0.05, 0.0, 0.0])
    assert not torch.allclose(predict(model, graph(moved_one, [0]))[0], ref_spec, atol=1e-4)

    def check(batch):
        spec, e0 = predict(model, batch)
        torch.testing.assert_close(spec, ref_spec, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(e0, ref_e0, atol=1e-4, rtol=1e-4)

    # rotation of lattice and positions
    torch.manual_seed(5)
    rot = o3.rand_matrix().double().numpy()
    rotated = Structure(
        Lattice(s.lattice.matrix @ rot.T),
        s.species,
        s.cart_coords @ rot.T,
        coords_are_cartesian=True,
    )
    check(graph(rotated, [0]))
    # translation
    moved = s.copy()
    moved.translate_sites(list(range(len(s))), [0.3, -1.1, 0.7], frac_coords=False)
    check(graph(moved, [0]))
    # site permutation
    perm = [2, 0, 1]
    permuted = Structure(s.lattice, [s.species[i] for i in perm], [s.frac_coords[i] for i in perm])
    check(graph(permuted, [perm.index(0)]))
    # 2x1x1 supercell
    big = s.copy()
    big.make_supercell([2, 1, 1])
    check(graph(big, [find_site(big, s[0].coords, "Fe")]))


@pytest.mark.parametrize("switch", SWITCHES)
def test_switch_changes_model_and_trains(switch):
    s = structure()
    batch = collate_graphs(
        [build_crystal_graph(s, [0, 1], GRAPH), build_crystal_graph(s, [2], GRAPH)]
    )
    on = tiny(seed=1)
    off = tiny(seed=1, **{switch: False})
    n_on = sum(p.numel() for p in on.parameters())
    n_off = sum(p.numel() for p in off.parameters())
    if n_on == n_off:
        assert not torch.allclose(predict(on, batch)[0], predict(off, batch)[0])

    target = torch.linspace(0.0, 1.0, 20).repeat(3, 1) + 0.1 * torch.randn(3, 20)
    e0_true = torch.tensor([1.0, -0.5, 0.3])
    off.train()
    opt = torch.optim.Adam(off.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        out = off(batch)
        loss, _ = xane3_loss(out["spectrum"], target, out["e0"], e0_true)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("parity", [1, -1])
def test_layer_norm_equivariant(parity):
    irreps = o3.Irreps("4x0e+2x1o+2x2e+1x0o")
    norm = EquivariantLayerNorm(irreps)
    with torch.no_grad():
        for w in norm.weights:
            w.uniform_(0.5, 1.5)
    torch.manual_seed(0)
    x = torch.randn(5, irreps.dim)
    rot = parity * o3.rand_matrix()
    d = irreps.D_from_matrix(rot)
    torch.testing.assert_close(norm(x @ d.T), norm(x) @ d.T, atol=1e-5, rtol=1e-5)
    scalars = norm(x)[:, :4]
    torch.testing.assert_close(scalars.mean(-1), torch.zeros(5), atol=1e-5, rtol=0)


def test_loss_terms_and_annealing():
    target = torch.randn(4, 30)
    offset = target + 0.5  # constant offset: no derivative error
    _, parts = xane3_loss(offset, target)
    assert parts["mse"] == pytest.approx(0.25)
    assert float(parts["d1"]) == pytest.approx(0.0, abs=1e-10)
    assert float(parts["d2"]) == pytest.approx(0.0, abs=1e-10)
    ramp = target + 0.1 * torch.arange(30.0)  # linear error: d1 = 0.01, d2 = 0
    _, parts = xane3_loss(ramp, target)
    assert float(parts["d1"]) == pytest.approx(0.01, rel=1e-4)
    assert float(parts["d2"]) == pytest.approx(0.0, abs=1e-8)

    pred = target + 0.3 * torch.randn(4, 30)
    total0, parts0 = xane3_loss(pred, target, d1=1.0, d2=1.0, epoch=0, anneal_epochs=10)
    assert float(parts0["anneal"]) == 0.0
    torch.testing.assert_close(total0, parts0["mse"])
    total5, parts5 = xane3_loss(pred, target, d1=1.0, d2=1.0, epoch=5, anneal_epochs=10)
    expected = parts5["mse"] + 0.5 * (parts5["d1"] + parts5["d2"])
    torch.testing.assert_close(total5, expected)
    full, _ = xane3_loss(pred, target, d1=1.0, d2=1.0, epoch=50, anneal_epochs=10)
    torch.testing.assert_close(full, xane3_loss(pred, target, d1=1.0, d2=1.0)[0])

    e0p, e0t = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])
    total, parts = xane3_loss(pred[:2], pred[:2], e0p, e0t, e0_weight=0.5)
    assert float(parts["e0"]) == pytest.approx(1.5)
    assert float(total) == pytest.approx(0.75)


def test_checkpoint_round_trip(tmp_path):
    from xas_models.checkpoint import (
        CheckpointMeta,
        EnergyGrid,
        FeaturizerInfo,
        load_checkpoint,
        save_checkpoint,
    )

    model = tiny(seed=7)
    meta = CheckpointMeta(
        energy_grid=EnergyGrid(start=0.0, step=1.0, n_points=20),
        elements=["Fe"],
        fidelity="FEFF",
        featurizer=FeaturizerInfo(name="crystal-graph", version="1.0", key="xane3-test"),
    )
    save_checkpoint(tmp_path / "ckpt", model, meta)
    loaded, meta2 = load_checkpoint(tmp_path / "ckpt")
    assert meta2.architecture == "xane3"
    batch = graph(structure(), [0, 1])
    spec, e0 = predict(model, batch)
    spec2, e02 = predict(loaded, batch)
    assert torch.equal(spec, spec2) and torch.equal(e0, e02)


def test_autocast_bf16_keeps_the_output_head_and_loss_in_fp32():
    """Under bf16 autocast with fp32 weights (the trainer's mixed precision) spectrum and E0
    come from an fp32 head: the curvature of their deviation from the fp32 model stays far
    below that of a spectrum rounded to bf16 point by point (the floor bf16 would put under
    the loss's second-derivative term), and the loss computes in fp32."""
    model = tiny(seed=1).train()
    batch = graph(structure(), [0, 1, 2])
    ref = model(batch)["spectrum"].detach()
    with torch.autocast("cpu", torch.bfloat16):
        out = model(batch)
    spectrum = out["spectrum"]
    assert spectrum.dtype == out["e0"].dtype == torch.float32

    def curvature(a: torch.Tensor) -> float:
        return float(torch.diff(a, n=2, dim=-1).pow(2).mean())

    assert curvature(spectrum - ref) < 0.1 * curvature(ref.bfloat16().float() - ref)
    total, parts = xane3_loss(spectrum.bfloat16(), ref, d2=1.0)
    assert total.dtype == parts["d2"].dtype == torch.float32
    total, _ = xane3_loss(spectrum, ref + 0.01, out["e0"], torch.zeros(3))
    total.backward()
    assert {p.grad.dtype for p in model.parameters() if p.grad is not None} == {torch.float32}
    assert model.bfloat16()(batch)["spectrum"].dtype == torch.bfloat16
