"""Loss terms: values against numpy, masks, weights, Huber variants, device-split invariance."""

import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.data.graph import pad_graph
from tace_jax.train.loss import (
    LossConfig,
    combine_loss,
    conditional_huber_delta,
    huber,
    loss_sums,
)


def _batch(
    rng, n_atoms=(3, 2), has_forces=(True, False), has_stress=(True, True), weight=(1.0, 2.0)
):
    n, g = sum(n_atoms), len(n_atoms)
    d = {
        "positions": rng.normal(size=(n, 3)),
        "species": np.zeros(n, int),
        "numbers": np.ones(n, int),
        "node_graph": np.repeat(np.arange(g), n_atoms),
        "senders": np.zeros(0, int),
        "receivers": np.zeros(0, int),
        "shifts": np.zeros((0, 3)),
        "cell": np.zeros((g, 3, 3)),
        "pbc": np.zeros((g, 3), bool),
        "targets": {
            "energy": rng.normal(size=g),
            "has_energy": np.ones(g, bool),
            "forces": rng.normal(size=(n, 3)),
            "has_forces": np.asarray(has_forces),
            "stress": rng.normal(size=(g, 3, 3)),
            "has_stress": np.asarray(has_stress),
            "weight": np.asarray(weight),
        },
    }
    t = d["targets"]
    graph = pad_graph({k: v for k, v in d.items() if k != "targets"}, (8, 4, 3))
    pad = lambda a, size: np.concatenate([a, np.zeros((size - len(a), *a.shape[1:]), a.dtype)])
    graph = graph.replace(
        targets={k: pad(np.asarray(v), 8 if k == "forces" else 3) for k, v in t.items()}
    )
    pred = {
        "energy": rng.normal(size=3),
        "forces": rng.normal(size=(8, 3)),
        "stress": rng.normal(size=(3, 3, 3)),
    }
    return graph, pred, d


def _ref(pred, d, kind, delta=0.01):
    t, ng = d["targets"], len(d["targets"]["energy"])
    n_at = np.bincount(d["node_graph"])
    f = {
        "mse": lambda e: e**2,
        "mae": np.abs,
        "huber": lambda e: np.where(
            np.abs(e) < delta, 0.5 * e**2, delta * (np.abs(e) - 0.5 * delta)
        ),
    }[kind]
    w = t["weight"]
    e = (pred["energy"][:ng] - t["energy"]) / n_at
    le = np.mean(w * f(e))
    node_w = w[d["node_graph"]]
    m = t["has_forces"][d["node_graph"]]
    ef = pred["forces"][: len(m)] - t["forces"]
    lf = np.sum((node_w[:, None] * f(ef))[m]) / (3 * m.sum())
    es = pred["stress"][:ng] - t["stress"]
    ls = np.mean(w[:, None, None] * f(es))
    return le, lf, ls


@pytest.mark.parametrize("kind", ["mse", "mae", "huber"])
def test_loss_values(rng, kind):
    graph, pred, d = _batch(rng)
    cfg = LossConfig(
        weights={"energy": 1.0, "forces": 10.0, "stress": 3.0}, loss_type=kind, huber_delta=0.5
    )
    sums = loss_sums(pred, graph, cfg)
    le, lf, ls = _ref(pred, d, kind, delta=0.5)
    np.testing.assert_allclose(sums["loss_energy"] / sums["count_energy"], le, rtol=1e-10)
    np.testing.assert_allclose(sums["loss_forces"] / sums["count_forces"], lf, rtol=1e-10)
    np.testing.assert_allclose(sums["loss_stress"] / sums["count_stress"], ls, rtol=1e-10)
    np.testing.assert_allclose(combine_loss(sums, cfg), le + 10 * lf + 3 * ls, rtol=1e-10)
    assert float(sums["count_forces"]) == 9  # only the 3 atoms of graph 0 have force labels


def test_padding_and_missing_labels_do_not_matter(rng):
    graph, pred, _ = _batch(rng)
    cfg = LossConfig(weights={"energy": 1.0, "forces": 1.0, "stress": 1.0})
    base = float(combine_loss(loss_sums(pred, graph, cfg), cfg))
    pred2 = {k: np.array(v) for k, v in pred.items()}
    pred2["energy"][2] += 100.0  # padding graph
    pred2["forces"][5:] += 100.0  # atoms of graph 1 (no force labels) and padding atoms
    pred2["stress"][2] += 100.0
    assert float(combine_loss(loss_sums(pred2, graph, cfg), cfg)) == pytest.approx(base)
    pred2["forces"][0] += 1.0
    assert float(combine_loss(loss_sums(pred2, graph, cfg), cfg)) > base + 0.1


def test_split_batches_combine_to_global_mean(rng):
    graph, pred, _ = _batch(rng, has_forces=(True, True))
    cfg = LossConfig(weights={"energy": 1.0, "forces": 5.0})
    full = loss_sums(pred, graph, cfg)
    # the same data with the second graph masked, plus the complement
    g_a = graph.replace(
        targets={
            **graph.targets,
            "has_energy": np.array([1, 0, 0], bool),
            "has_forces": np.array([1, 0, 0], bool),
        }
    )
    g_b = graph.replace(
        targets={
            **graph.targets,
            "has_energy": np.array([0, 1, 0], bool),
            "has_forces": np.array([0, 1, 0], bool),
        }
    )
    a, b = loss_sums(pred, g_a, cfg), loss_sums(pred, g_b, cfg)
    summed = {k: a[k] + b[k] for k in a}
    np.testing.assert_allclose(combine_loss(summed, cfg), combine_loss(full, cfg), rtol=1e-12)


def test_huber_and_conditional_delta():
    x = jnp.asarray([-2.0, -0.1, 0.0, 0.05, 3.0])
    np.testing.assert_allclose(huber(x, 0.1), [0.195, 0.1 * 0.05, 0.0, 0.5 * 0.0025, 0.295])
    f = jnp.asarray([[50.0, 0, 0], [0, 150.0, 0], [0, 0, 250.0], [400.0, 0, 0]])
    np.testing.assert_allclose(conditional_huber_delta(f, 0.01)[:, 0], [0.01, 0.007, 0.004, 0.001])


def test_missing_labels_raise(rng):
    graph, pred, _ = _batch(rng)
    with pytest.raises(KeyError, match="virials"):
        loss_sums(pred, graph, LossConfig(weights={"virials": 1.0}))
    with pytest.raises(ValueError, match="unknown loss property"):
        LossConfig(weights={"magnetization": 1.0})
