"""Parity with the reference PyTorch TACE v0.1.0 for the embedding / field / multi-head
fixtures (fixture README §10), float64.

Every output a fixture stores for the model itself is compared: energy (≤ 1e-10), node energy,
scalar descriptor, forces, stress and virials (through ``tace_jax.properties``), and the direct
heads (≤ 1e-9). The small systems run by default, batched per fixture (one compilation each);
aspirin and tio2 are ``slow``. Field/magnetic responses are checked in ``tests/properties``.

Print the table: ``python tests/models/test_embed_parity.py [--all]``.
"""

from __future__ import annotations

import functools
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tace_testutils import FIXTURES, pad, stored_graph_dict

from tace_jax.data.fields import INPUTS
from tace_jax.models import TACE, load_reference
from tace_jax.properties import compute_properties

E_TOL, TOL = 1e-10, 1e-9
SMALL = {
    "field_dev": ("hcooh", "si8"),
    "field_gate_dev": ("hcooh", "si8_zero_field"),
    "embed_dev": ("hcooh", "si8"),
    "multihead_dev": ("hcooh_level0", "hcooh_level1", "hcooh_level2", "si8_level1"),
}
LARGE = {
    "field_dev": ("aspirin", "tio2", "tio2_zero_field"),
    "field_gate_dev": ("tio2",),
    "embed_dev": ("aspirin", "tio2"),
    "multihead_dev": tuple(f"{s}_level{m}" for s in ("aspirin", "tio2") for m in range(3)),
}
PER_ATOM = ("node_energy", "scalar_descriptor", "forces", "direct_forces")
PER_GRAPH = ("stress", "virials", "direct_dipole", "direct_polarizability")
PROPS = ("energy", "forces", "stress", "virials", "node_energy", "scalar_descriptor")


def fixture_files(variant: str) -> tuple[str, str]:
    return f"{FIXTURES}/tace_{variant}.npz", f"{FIXTURES}/tace_{variant}.json"


@functools.cache
def setup(variant: str):
    cfg, stats, variables = load_reference(*fixture_files(variant))
    z, meta = load_fixture_any(variant)
    model = TACE(cfg, stats)
    fn = jax.jit(functools.partial(compute_properties, model.apply, properties=PROPS))
    return cfg, jax.tree.map(jnp.asarray, variables), fn, z, meta, model


@functools.cache
def load_fixture_any(variant: str):
    npz, js = fixture_files(variant)
    with np.load(npz) as f:
        z = {k: f[k] for k in f.files}
    with open(js) as f:
        meta = json.load(f)
    return z, meta


def graph_dict(z: dict, system: str, cfg) -> dict:
    """The stored graph of ``system`` with the model inputs ``cfg.input_names`` as extras."""
    d = stored_graph_dict(z, system, cfg.atomic_numbers)
    d["extras"] = {name: np.asarray(z[f"{system}/{name}"]) for name in cfg.input_names}
    for name, v in d["extras"].items():
        if INPUTS[name].kind == "int":
            d["extras"][name] = v.astype(np.int32)
    return d


def batch(variant: str, systems) -> tuple:
    cfg, variables, fn, z, *_ = setup(variant)
    dicts = [graph_dict(z, s, cfg) for s in systems]
    n = sum(len(d["positions"]) for d in dicts)
    e = sum(len(d["senders"]) for d in dicts)
    budgets = (-(-(n + 1) // 16) * 16, -(-e // 256) * 256, len(dicts) + 1)
    graph = pad(dicts, budgets)
    return fn(variables, graph), dicts, z


def errors(variant: str, systems) -> dict[str, float]:
    """Max |ours − reference| per output over ``systems`` (one batch)."""
    out, dicts, z = batch(variant, systems)
    err: dict[str, float] = {}
    off = 0
    for k, (s, d) in enumerate(zip(systems, dicts)):
        n = len(d["positions"])
        for name in ("energy", *PER_ATOM, *PER_GRAPH):
            if f"{s}/{name}" not in z:
                continue
            if name not in out:
                raise AssertionError(f"{variant}/{s}: output {name!r} missing")
            ours = np.asarray(out[name][off : off + n] if name in PER_ATOM else out[name][k])
            ref = z[f"{s}/{name}"]
            ref = ref if name in PER_ATOM else ref[0]
            err[name] = max(err.get(name, 0.0), float(np.max(np.abs(ours - ref))))
        off += n
    return err


def _assert(variant, err):
    bad = {k: v for k, v in err.items() if v > (E_TOL if k == "energy" else TOL)}
    assert not bad, f"{variant}: {bad}"
    assert {"energy", "forces", "stress", "virials", "node_energy"} <= set(err)


@pytest.mark.parametrize("variant", list(SMALL))
def test_parity_small(variant):
    err = errors(variant, SMALL[variant])
    _assert(variant, err)
    if variant == "field_dev":
        assert {"direct_dipole", "direct_polarizability", "direct_forces"} <= set(err)


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(LARGE))
def test_parity_large(variant):
    _assert(variant, errors(variant, LARGE[variant]))


@pytest.mark.parametrize("variant", list(SMALL))
def test_import_is_complete(variant):
    """Every reference weight is consumed and the parameter count matches."""
    _, variables, _, _, meta, _ = setup(variant)
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables))
    assert n == meta["n_params"]


def test_fixture_inputs_are_what_the_config_reads():
    for variant in SMALL:
        cfg, _, _, _, meta, _ = setup(variant)
        used = set(cfg.input_names) - {"charges"}  # charges: direct_dipole input, not embedded
        assert used == set(meta["embedding_property"]) - {"charges"} | (
            {"level"} if cfg.num_levels > 1 else set()
        )


def test_missing_input_names_the_field():
    cfg, variables, _, z, _, model = setup("field_dev")
    d = graph_dict(z, "hcooh", cfg)
    del d["extras"]["electric_field"]
    with pytest.raises(KeyError, match="electric_field"):
        jax.eval_shape(model.apply, variables, pad([d], (16, 256, 2)))
    d = graph_dict(z, "hcooh", cfg)
    d["extras"]["charges"] = d["extras"]["charges"][:, None].repeat(2, 1)
    with pytest.raises(ValueError, match="charges"):
        jax.eval_shape(model.apply, variables, pad([d], (16, 256, 2)))


if __name__ == "__main__":  # print the parity table
    jax.config.update("jax_enable_x64", True)
    table = {v: SMALL[v] + (LARGE[v] if "--all" in sys.argv else ()) for v in SMALL}
    for variant, systems in table.items():
        err = errors(variant, systems)
        print(variant, ", ".join(systems))
        for k, v in err.items():
            print(f"  {k:24s} {v:.2e}")
