"""Parity of the response properties with the reference PyTorch TACE v0.1.0 (float64).

Fixtures ``tests/fixtures/tace_{field_dev,field_gate_dev,embed_dev}.*``: polarization,
conservative polarizability and Born effective charges (field models); magnetization,
magnetic susceptibility and the collinear / non-collinear magnetic forces (``embed_dev``), all
≤ 1e-9. The small systems (batched per fixture) run by default; aspirin and tio2 are a second
batch behind ``slow`` (``pytest -m slow``): each fixture compiles the forward-over-reverse pass
of the full model once.

Print the table: ``python tests/properties/test_response_parity.py [--all]``.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")
)
from tace_testutils import FIXTURES, pad, stored_graph_dict  # noqa: E402

from tace_jax.data.fields import INPUTS  # noqa: E402
from tace_jax.models import TACE, load_reference  # noqa: E402
from tace_jax.properties import RESPONSE_SHAPES, compute_properties  # noqa: E402

TOL = 1e-9
FIELD = ("polarization", "conservative_polarizability", "born_effective_charges")
MAGNETIC = (
    "magnetization",
    "magnetic_susceptibility",
    "collinear_magnetic_forces",
    "noncollinear_magnetic_forces",
)
OUTPUTS = {"field_dev": FIELD, "field_gate_dev": FIELD, "embed_dev": MAGNETIC}
SMALL = {
    "field_dev": ("hcooh", "si8"),
    "field_gate_dev": ("hcooh", "si8_zero_field"),
    "embed_dev": ("hcooh", "si8"),
}
LARGE = {
    "field_dev": ("aspirin", "tio2", "tio2_zero_field"),
    "field_gate_dev": ("tio2",),
    "embed_dev": ("aspirin", "tio2"),
}


@functools.cache
def setup(variant: str):
    npz, js = f"{FIXTURES}/tace_{variant}.npz", f"{FIXTURES}/tace_{variant}.json"
    cfg, stats, variables = load_reference(npz, js)
    with np.load(npz) as f:
        z = {k: f[k] for k in f.files}
    with open(js) as f:
        meta = json.load(f)
    props = ("energy", *OUTPUTS[variant])
    fn = jax.jit(functools.partial(compute_properties, TACE(cfg, stats).apply, properties=props))
    return cfg, jax.tree.map(jnp.asarray, variables), fn, z, meta


def graph_dict(z: dict, system: str, cfg) -> dict:
    """The stored graph of ``system`` with the model inputs ``cfg.input_names`` as extras."""
    d = stored_graph_dict(z, system, cfg.atomic_numbers)
    d["extras"] = {name: np.asarray(z[f"{system}/{name}"]) for name in cfg.input_names}
    for name, v in d["extras"].items():
        if INPUTS[name].kind == "int":
            d["extras"][name] = v.astype(np.int32)
    return d


def errors(variant: str, systems) -> dict[str, float]:
    """Max |ours − reference| per response output over ``systems`` (one padded batch)."""
    cfg, variables, fn, z, _ = setup(variant)
    dicts = [graph_dict(z, s, cfg) for s in systems]
    n = sum(len(d["positions"]) for d in dicts)
    e = sum(len(d["senders"]) for d in dicts)
    graph = pad(dicts, (-(-(n + 1) // 16) * 16, -(-e // 256) * 256, len(dicts) + 1))
    out = jax.tree.map(np.asarray, fn(variables, graph))
    err: dict[str, float] = {}
    off = 0
    for k, (s, d) in enumerate(zip(systems, dicts)):
        n = len(d["positions"])
        for name in OUTPUTS[variant]:
            per_node = RESPONSE_SHAPES[name][0] == "node"
            ours = out[name][off : off + n] if per_node else out[name][k : k + 1]
            ref = z[f"{s}/{name}"]
            assert ours.shape == ref.shape, (variant, s, name, ours.shape, ref.shape)
            err[name] = max(err.get(name, 0.0), float(np.max(np.abs(ours - ref))))
        off += n
    return err


def _assert(variant: str, err: dict) -> None:
    assert set(err) == set(OUTPUTS[variant])
    bad = {k: v for k, v in err.items() if not v <= TOL}
    assert not bad, f"{variant}: {bad}"


@pytest.mark.parametrize("variant", list(SMALL))
def test_response_parity_small(variant):
    _assert(variant, errors(variant, SMALL[variant]))


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(LARGE))
def test_response_parity_large(variant):
    _assert(variant, errors(variant, LARGE[variant]))


if __name__ == "__main__":  # print the parity table
    jax.config.update("jax_enable_x64", True)
    for variant in SMALL:
        systems = SMALL[variant] + (LARGE[variant] if "--all" in sys.argv else ())
        print(variant, ", ".join(systems))
        for k, v in errors(variant, systems).items():
            print(f"  {k:30s} {v:.2e}")
