"""Numerical parity of the TACE model with the reference PyTorch TACE v0.1.0 (float64).

Fixtures (tests/fixtures): ``tiny_l2`` (hcooh, si8) and a trimmed ``default`` (tio2; the weight
rows of the elements tio2 does not contain are zeroed, see make_default_trim.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tace_testutils import (
    VARIANTS,
    fixture_paths,
    load_fixture,
    own_graph_dict,
    pad,
    stored_graph_dict,
)

from tace_jax.models import TACE, load_reference

TOL = 1e-10
# one set of budgets per variant, so that every graph of a variant shares one compilation
BUDGETS = {"tiny_l2": (16, 512, 3), "default": (32, 2304, 3)}


@functools.cache
def _setup(variant: str):
    cfg, stats, variables = load_reference(*fixture_paths(variant))
    variables = jax.tree.map(jnp.asarray, variables)
    model = TACE(cfg, stats)
    z, meta = load_fixture(variant)
    return cfg, stats, variables, jax.jit(model.apply), z, meta


def _cases():
    return [(v, s) for v, (_, _, systems) in VARIANTS.items() for s in systems]


def _check(out, z, system, n, offset=0, graph_index=0):
    ref_e = float(z[f"{system}/energy"][0])
    e = float(out["energy"][graph_index])
    assert abs(e - ref_e) <= TOL, f"{system}: energy {e} vs reference {ref_e}"
    ne = np.asarray(out["node_energy"][offset : offset + n])
    np.testing.assert_allclose(ne, z[f"{system}/node_energy"], rtol=0, atol=TOL)
    desc = np.asarray(out["scalar_descriptor"][offset : offset + n])
    np.testing.assert_allclose(desc, z[f"{system}/scalar_descriptor"], rtol=0, atol=TOL)


@pytest.mark.parametrize("variant,system", _cases())
@pytest.mark.parametrize("edges", ["stored", "own"])
def test_parity_single(variant, system, edges):
    cfg, _, variables, apply, z, _ = _setup(variant)
    if edges == "stored":
        g = stored_graph_dict(z, system, cfg.atomic_numbers)
    else:
        g = own_graph_dict(z, system, cfg.cutoff, cfg.atomic_numbers)
        assert len(g["senders"]) == z[f"{system}/edge_index"].shape[1]
    graph = pad([g], BUDGETS[variant])
    out = apply(variables, graph)
    assert out["energy"].dtype == jnp.float64
    _check(out, z, system, len(g["positions"]))
    # padding: padding nodes carry no energy, the padding graph none either
    n = len(g["positions"])
    assert np.all(np.asarray(out["node_energy"][n:]) == 0.0)
    assert np.all(np.asarray(out["energy"][1:]) == 0.0)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_parity_batched(variant):
    """All systems (stored and own edges) in one padded batch equal the single runs."""
    cfg, _, variables, apply, z, _ = _setup(variant)
    systems = VARIANTS[variant][2]
    dicts, names = [], []
    for s in systems:
        dicts.append(stored_graph_dict(z, s, cfg.atomic_numbers))
        names.append(s)
        if len(systems) == 1:  # batch a second copy built from our own neighbour list
            dicts.append(own_graph_dict(z, s, cfg.cutoff, cfg.atomic_numbers))
            names.append(s)
    budgets = BUDGETS[variant]
    graph = pad(dicts, (budgets[0] * 2, budgets[1] * 2, len(dicts) + 1))
    out = jax.jit(TACE(cfg, _setup(variant)[1]).apply)(variables, graph)
    offset = 0
    for k, (s, d) in enumerate(zip(names, dicts)):
        n = len(d["positions"])
        _check(out, z, s, n, offset=offset, graph_index=k)
        offset += n


@pytest.mark.parametrize("system", VARIANTS["tiny_l2"][2])
def test_forces_tiny(system):
    """Sanity check of −∂E/∂x against the reference forces (full checks: tace_jax.properties)."""
    cfg, _, variables, apply, z, _ = _setup("tiny_l2")
    g = stored_graph_dict(z, system, cfg.atomic_numbers)
    graph = pad([g], BUDGETS["tiny_l2"])

    def energy(pos):
        return apply(variables, graph.replace(positions=pos))["energy"].sum()

    forces = -jax.jit(jax.grad(energy))(graph.positions)
    n = len(g["positions"])
    np.testing.assert_allclose(forces[:n], z[f"{system}/forces"], rtol=0, atol=1e-9)


def test_forces_default():
    cfg, _, variables, apply, z, _ = _setup("default")
    g = stored_graph_dict(z, "tio2", cfg.atomic_numbers)
    graph = pad([g], BUDGETS["default"])

    def energy(pos):
        return apply(variables, graph.replace(positions=pos))["energy"].sum()

    forces = -jax.jit(jax.grad(energy))(graph.positions)
    np.testing.assert_allclose(forces[:12], z["tio2/forces"], rtol=0, atol=1e-9)


def test_reference_import_is_complete():
    """Every torch weight is consumed and the parameter counts match the reference."""
    for variant in VARIANTS:
        cfg, _, variables, _, _, meta = _setup(variant)
        n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables))
        assert n == meta["n_params"], (variant, n, meta["n_params"])


def test_reference_import_rejects_bad_weights(tmp_path):
    npz, js = fixture_paths("tiny_l2")
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    bad = dict(arrays)
    key = "w/readout_fn.energy_readouts.0.mlp.0.weight"
    bad[key] = bad[key][:-1]
    np.savez(tmp_path / "bad_shape.npz", **bad)
    with pytest.raises(ValueError, match="shape"):
        load_reference(tmp_path / "bad_shape.npz", js)
    missing = {k: v for k, v in arrays.items() if k != key}
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(ValueError, match="without a reference weight"):
        load_reference(tmp_path / "missing.npz", js)
    extra = dict(arrays)
    extra["w/readout_fn.something.weight"] = np.zeros(3)
    np.savez(tmp_path / "extra.npz", **extra)
    with pytest.raises(ValueError, match="no mapping"):
        load_reference(tmp_path / "extra.npz", js)
