"""Response loss terms (issue 10, Build 1 and 2): double-backprop gradients against finite
differences in float64, the polarization-quantum folding, label masks and per-structure weights.

A tiny TACE with the ``electric_field`` embedding (a field model) is built on two small periodic
cells and one molecule; random labels stand in for DFT data.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.data import Structure
from tace_jax.data.batch import BatchAssembler
from tace_jax.models import TACE, Statistics, TACEConfig
from tace_jax.train.loss import LossConfig, combine_loss, loss_sums
from tace_jax.train.step import _batch_loss_fn, _per_batch_fn

MODEL = dict(
    cutoff=3.5,
    num_layers=1,
    correlation=2,
    num_channel=4,
    lmax_node=1,
    lmax_edge=1,
    radial_hidden=(8,),
    readout_hidden=(4,),
    zbl=False,
    atomic_numbers=(1, 8),
)
TERMS = (
    "polarization",
    "conservative_polarizability",
    "born_effective_charges",
    "dipole",
    "polarizability",
    "hessian",
)


def _structures(rng, with_charges=False):
    cell = np.diag([3.1, 3.3, 3.6]) + 0.1 * rng.normal(size=(3, 3))
    out = []
    for k, (n, pbc) in enumerate(((4, True), (3, True), (3, False))):
        base = np.array([[0.2, 0.3, 0.1], [1.5, 0.4, 1.2], [0.5, 1.7, 1.9], [2.0, 2.1, 0.6]])
        pos = base[:n] + 0.1 * rng.normal(size=(n, 3))
        numbers = np.array([8, 1, 1, 8][:n])
        s = dict(
            numbers=numbers,
            positions=pos,
            cell=cell if pbc else None,
            pbc=pbc,
            energy=rng.normal(),
            forces=rng.normal(size=(n, 3)),
            polarization=rng.normal(size=3),
            dipole=rng.normal(size=3),
            polarizability=rng.normal(size=(3, 3)),
            born_charges=rng.normal(size=(n, 3, 3)),
            electric_field=0.1 * rng.normal(size=3),
            weight=1.0 + k,
            source=("synthetic", k),
        )
        if with_charges:
            s["charges"] = rng.normal(scale=0.3, size=n)
        out.append(Structure(**s))
    return out


def _hessian_label(rng, batch):
    n = batch.num_nodes
    h = rng.normal(size=(n, 3, n, 3))
    same = np.asarray(batch.node_graph)[:, None] == np.asarray(batch.node_graph)[None, :]
    return h * same[:, None, :, None]


@functools.cache
def _setup(field: bool = True):
    rng = np.random.default_rng(3)
    kw = dict(equivariant_embeddings=("electric_field",)) if field else {}
    if not field:
        kw["targets"] = ("energy", "direct_dipole", "direct_polarizability")
        kw["lmax_node"] = kw["lmax_edge"] = 2
    cfg = TACEConfig(**{**MODEL, **kw})
    stats = Statistics(atomic_energies=[-0.5, -2.0], scale=[1.0, 1.0], shift=[0.0, 0.0])
    model = TACE(cfg, stats, param_dtype=jnp.float64)
    ss = _structures(rng, with_charges=not field)
    asm = BatchAssembler(ss, cfg.cutoff, cfg.atomic_numbers, "float64", inputs=cfg.input_names)
    batch = asm.assemble(range(len(ss)), (16, 256, 4))
    targets = dict(batch.targets)
    targets["hessian"] = _hessian_label(rng, batch)
    targets["has_hessian"] = np.asarray(batch.graph_mask)
    batch = jax.tree.map(jnp.asarray, batch.replace(targets=targets))
    variables = model.init(jax.random.key(0), batch)
    # non-trivial field response: perturb every parameter a little
    leaves, tree = jax.tree.flatten(variables["params"])
    keys = jax.random.split(jax.random.key(1), len(leaves))
    leaves = [x + 0.3 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    variables = {**variables, "params": jax.tree.unflatten(tree, leaves)}
    return model, variables, batch


DIRECT_TERMS = ("dipole", "polarizability")


def _terms(field: bool) -> tuple[str, ...]:
    return TERMS if field else DIRECT_TERMS


@functools.cache
def _loss_fn(field: bool = True, loss_type: str = "mse"):
    """Jitted ``params, graph -> ([term losses], sums)`` for every term at once, and its
    Jacobian (one compilation each for all terms)."""
    model, variables, batch = _setup(field)
    terms = _terms(field)
    cfg = LossConfig(weights={t: 1.0 for t in terms}, loss_type=loss_type, huber_delta=0.5)
    per_batch = _per_batch_fn(model.apply, terms, True)
    batch_loss = _batch_loss_fn(model.apply, per_batch, cfg)

    def loss(params, graph):
        pred, sums = batch_loss({**variables, "params": params}, graph, jax.random.key(5))
        one = [combine_loss(sums, LossConfig(weights={t: 1.0})) for t in terms]
        return jnp.stack(one), sums, pred

    return jax.jit(loss), jax.jit(jax.jacrev(lambda p, g: loss(p, g)[0]))


def _directional_fd(field=True, loss_type="mse", h=1e-5):
    _, variables, batch = _setup(field)
    loss, jac = _loss_fn(field, loss_type)
    params = variables["params"]
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    direction = jax.tree.unflatten(
        tree, [jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    )
    shift = lambda s: jax.tree.map(lambda p, d: p + s * d, params, direction)  # noqa: E731
    fd = (loss(shift(h), batch)[0] - loss(shift(-h), batch)[0]) / (2 * h)
    j = jac(params, batch)
    ad = sum(
        jnp.tensordot(a, b, axes=b.ndim)
        for a, b in zip(jax.tree.leaves(j), jax.tree.leaves(direction))
    )
    return np.asarray(ad), np.asarray(fd), np.asarray(loss(params, batch)[0])


@pytest.mark.slow  # ~40 s CPU: the Jacobian of six double-backprop terms
def test_response_loss_gradients_match_finite_differences():
    """Every response term (field model; double backprop through P, α, Z*, Hessian rows)."""
    ad, fd, value = _directional_fd()
    for k, term in enumerate(TERMS):
        assert value[k] > 1e-3, term  # the term is on and non-trivial
        assert abs(ad[k]) > 1e-6, term
        np.testing.assert_allclose(ad[k], fd[k], rtol=1e-6, atol=1e-9, err_msg=term)


@pytest.mark.slow
def test_direct_head_loss_gradients_match_finite_differences():
    """``dipole``/``polarizability`` of a model without the field train the direct heads."""
    ad, fd, value = _directional_fd(field=False, loss_type="huber")
    for k, term in enumerate(DIRECT_TERMS):
        assert value[k] > 1e-4 and abs(ad[k]) > 1e-6, term
        np.testing.assert_allclose(ad[k], fd[k], rtol=1e-6, atol=1e-9, err_msg=term)


@functools.cache
def _synthetic():
    """A field-model batch with labels and random predictions (no model: the loss alone)."""
    rng = np.random.default_rng(5)
    ss = _structures(rng)
    asm = BatchAssembler(ss, 3.5, (1, 8), "float64", inputs=("electric_field",))
    batch = asm.assemble(range(len(ss)), (16, 256, 4))
    targets = dict(batch.targets)
    targets["hessian"] = _hessian_label(rng, batch)
    targets["has_hessian"] = np.asarray(batch.graph_mask)
    batch = jax.tree.map(jnp.asarray, batch.replace(targets=targets))
    n, g = batch.num_nodes, batch.num_graphs
    pred = {
        "energy": rng.normal(size=g),
        "polarization": rng.normal(size=(g, 3)),
        "conservative_polarizability": rng.normal(size=(g, 3, 3)),
        "born_effective_charges": rng.normal(size=(n, 3, 3)),
    }
    first = np.cumsum(np.asarray(batch.n_node)) - np.asarray(batch.n_node)
    atom = np.stack([first, first + 1], axis=1).astype(np.int32)  # two rows per graph
    rows = {
        "rows": rng.normal(size=(g, 2, n, 3)),
        "atom": atom,
        "xyz": np.array([[0, 2]] * g, np.int32),
        "mask": np.asarray(batch.graph_mask)[:, None] & np.ones((1, 2), bool),
    }
    return batch, jax.tree.map(jnp.asarray, pred), jax.tree.map(jnp.asarray, rows)


_SUMS = jax.jit(loss_sums, static_argnums=2)


def _value(term, batch):
    _, pred, rows = _synthetic()
    cfg = LossConfig(weights={term: 1.0})
    sums = _SUMS(pred, batch, cfg, rows)
    return float(combine_loss(sums, cfg)), jax.tree.map(float, sums)


def _with_targets(batch, **changes):
    return batch.replace(targets={**batch.targets, **changes})


@pytest.mark.parametrize("term", ("polarization", "dipole"))
def test_label_shifted_by_a_polarization_quantum_gives_the_same_loss(term):
    batch = _synthetic()[0]
    base, _ = _value(term, batch)
    label = np.array(batch.targets[term])
    cell = np.asarray(batch.cell)
    label[0] += cell[0, 0] - 2 * cell[0, 2]  # e·R for two lattice vectors of graph 0
    label[1] += 3 * cell[1, 1]
    shifted, _ = _value(term, _with_targets(batch, **{term: jnp.asarray(label)}))
    np.testing.assert_allclose(shifted, base, rtol=1e-10)
    label[2] += cell[0, 0]  # graph 2 is a molecule: no quantum, the loss changes
    moved, _ = _value(term, _with_targets(batch, **{term: jnp.asarray(label)}))
    assert abs(moved - base) > 1e-3


def test_field_free_dipole_is_not_folded():
    """A model without the field trains ``direct_dipole`` (Debye → e·Å), with no folding."""
    batch, pred, _ = _synthetic()
    free = batch.replace(extras={})
    pred = {**pred, "direct_dipole": 4.8032047 * batch.targets["dipole"]}
    cfg = LossConfig(weights={"dipole": 1.0})
    assert float(combine_loss(_SUMS(pred, free, cfg, None), cfg)) == pytest.approx(0, abs=1e-20)
    label = np.array(batch.targets["dipole"])
    label[0] += np.asarray(batch.cell)[0, 0]
    sums = _SUMS(pred, _with_targets(free, dipole=jnp.asarray(label)), cfg, None)
    assert float(combine_loss(sums, cfg)) > 1e-3


_LABEL = {
    "polarization": "polarization",
    "conservative_polarizability": "polarizability",
    "born_effective_charges": "born_charges",
    "dipole": "dipole",
    "polarizability": "polarizability",
    "hessian": "hessian",
}


@pytest.mark.parametrize("term", TERMS)
def test_missing_label_is_masked(term):
    batch = _synthetic()[0]
    label = _LABEL[term]
    has = np.array(batch.targets[f"has_{label}"])
    has[1] = False
    masked = _with_targets(batch, **{f"has_{label}": jnp.asarray(has)})
    base, sums = _value(term, masked)
    junk = np.array(batch.targets[label])
    node_graph = np.asarray(batch.node_graph)
    per_node = junk.shape[0] == batch.num_nodes
    rows = (node_graph == 1) if per_node else np.arange(len(junk)) == 1
    junk[rows] = 1e3 * np.random.default_rng(0).normal(size=junk[rows].shape)
    junk[~np.asarray(batch.node_mask if per_node else batch.graph_mask)] = 7
    other, sums2 = _value(term, _with_targets(masked, **{label: jnp.asarray(junk)}))
    assert base > 0
    assert other == pytest.approx(base, rel=1e-12)
    assert sums2[f"count_{term}"] == sums[f"count_{term}"]
    _, sums3 = _value(term, batch)
    assert sums3[f"count_{term}"] > sums[f"count_{term}"]  # the mask really removed entries


def test_per_structure_weight_and_counts():
    batch, pred, _ = _synthetic()
    cfg = LossConfig(weights={"born_effective_charges": 1.0, "polarization": 2.0})
    sums = _SUMS(pred, batch, cfg, None)
    t, gm = batch.targets, np.asarray(batch.graph_mask)
    w = np.asarray(t["weight"])
    nm, ng = np.asarray(batch.node_mask), np.asarray(batch.node_graph)
    dz = (np.asarray(pred["born_effective_charges"]) - np.asarray(t["born_charges"]))[nm]
    ref = np.sum(w[ng[nm], None, None] * dz**2)
    np.testing.assert_allclose(float(sums["loss_born_effective_charges"]), ref, rtol=1e-10)
    assert float(sums["count_born_effective_charges"]) == 9 * nm.sum()
    assert float(sums["count_polarization"]) == 3 * gm.sum()
    total = float(combine_loss(sums, cfg))
    expect = ref / (9 * nm.sum()) + 2 * float(sums["loss_polarization"]) / (3 * gm.sum())
    np.testing.assert_allclose(total, expect, rtol=1e-10)


def test_hessian_rows_compare_with_the_matching_label_rows():
    batch, pred, rows = _synthetic()
    cfg = LossConfig(weights={"hessian": 1.0}, loss_type="mae")
    sums = _SUMS(pred, batch, cfg, rows)
    h, ng = np.asarray(batch.targets["hessian"]), np.asarray(batch.node_graph)
    nm = np.asarray(batch.node_mask)
    ref, count = 0.0, 0
    for g in np.nonzero(np.asarray(batch.graph_mask))[0]:
        cols = (ng == g) & nm
        for k in range(2):
            a, x = int(rows["atom"][g, k]), int(rows["xyz"][g, k])
            d = np.asarray(rows["rows"])[g, k][cols] - h[a, x][cols]
            ref += float(np.asarray(batch.targets["weight"])[g]) * np.abs(d).sum()
            count += d.size
    np.testing.assert_allclose(float(sums["loss_hessian"]), ref, rtol=1e-10)
    assert float(sums["count_hessian"]) == count


def test_direct_head_term_without_head_names_it():
    batch, pred, _ = _synthetic()
    cfg = LossConfig(weights={"dipole": 1.0})
    with pytest.raises(KeyError, match="direct_dipole"):
        loss_sums(pred, batch.replace(extras={}), cfg)


def test_error_accumulator_response_metrics_match_numpy():
    """Metrics of padded batches (P folded, Z* per element) equal a direct numpy computation."""
    from tace_jax.train.metrics import ErrorAccumulator

    rng = np.random.default_rng(11)
    ss = _structures(rng)
    asm = BatchAssembler(ss, 3.5, (1, 8), "float64", inputs=("electric_field",))
    acc = ErrorAccumulator()
    ref = {"P": [], "Z": [], "a": [], "zs": []}
    for idx in ([0, 1], [2]):
        g = asm.assemble(idx, (16, 256, 4))
        n, gn = g.num_nodes, g.num_graphs
        pred = {
            "polarization": rng.normal(size=(gn, 3)),
            "born_effective_charges": rng.normal(size=(n, 3, 3)),
            "conservative_polarizability": rng.normal(size=(gn, 3, 3)),
        }
        acc.add(pred, g)
        p = pred["polarization"].copy()
        for k, i in enumerate(idx):
            s = ss[i]
            d = p[k] - s.polarization
            ref["P"].append(d)
            p[k] += 2 * s.cell[1] if s.pbc.all() else 0.0  # a quantum: no change of metrics
            first = sum(ss[j].n_atoms for j in idx[:k])
            ref["Z"].append(
                pred["born_effective_charges"][first : first + s.n_atoms] - s.born_charges
            )
            ref["a"].append(pred["conservative_polarizability"][k] - s.polarizability)
            ref["zs"].append(s.numbers)
        acc.add({"polarization": p}, g)  # shifted by quanta: same errors again
    m = acc.compute()
    dp = np.concatenate([ref["P"], ref["P"]])
    np.testing.assert_allclose(m["polarization_mae"], np.mean(np.abs(dp)), rtol=1e-12)
    np.testing.assert_allclose(m["polarization_rmse"], np.sqrt(np.mean(dp**2)), rtol=1e-12)
    dz, zs = np.concatenate(ref["Z"]), np.concatenate(ref["zs"])
    np.testing.assert_allclose(m["born_effective_charges_rmse"], np.sqrt(np.mean(dz**2)))
    np.testing.assert_allclose(m["born_effective_charges_O_mae"], np.mean(np.abs(dz[zs == 8])))
    np.testing.assert_allclose(m["born_effective_charges_H_mae"], np.mean(np.abs(dz[zs == 1])))
    da = np.asarray(ref["a"])
    np.testing.assert_allclose(m["conservative_polarizability_mae"], np.mean(np.abs(da)))
