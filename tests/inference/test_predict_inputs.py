"""Model inputs through ``Potential.predict``, ``TACECalculator`` and save/load (issue 9).

A tiny model with an electric-field embedding, a direct dipole head (which needs per-atom
charges) and two fidelity levels: each kind of bad input raises a clear error naming the
structure and the field; keywords override ``atoms.info``; an unused input warns once.
"""

from __future__ import annotations

import warnings

import ase
import jax
import numpy as np
import pytest

from tace_jax.calculator import TACECalculator
from tace_jax.data import DataError
from tace_jax.inference import Potential
from tace_jax.models import Statistics, TACEConfig


@pytest.fixture(scope="module")
def pot():
    cfg = TACEConfig(
        atomic_numbers=(1, 8),
        cutoff=3.0,
        num_layers=1,
        correlation=2,
        num_channel=8,
        lmax_node=1,
        lmax_edge=1,
        radial_hidden=(8,),
        zbl=False,
        num_levels=2,
        use_multi_head=True,
        targets=("energy", "direct_dipole"),
        equivariant_embeddings=("electric_field",),
    )
    assert cfg.input_names == ("electric_field", "charges", "level")
    return Potential.init(cfg, Statistics.default(2, 2), jax.random.key(3), dtype="float64")


def _water(level=1, field=(0.0, 0.0, 0.05)):
    atoms = ase.Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0.1]])
    atoms.arrays["charges"] = np.array([-0.8, 0.4, 0.4])
    atoms.info["level"] = level
    atoms.info["electric_field"] = np.array(field)
    return atoms


def test_inputs_reach_the_model_and_keywords_override(pot):
    a = _water()
    props = ("energy", "polarization")
    r0 = pot.predict(a, props)
    r1 = pot.predict(a, props, electric_field=[0.0, 0.0, -0.05])
    b = _water(field=(0.0, 0.0, -0.05))
    np.testing.assert_allclose(r1["energy"], pot.predict(b, props)["energy"], atol=1e-12)
    assert abs(r0["energy"] - r1["energy"]) > 1e-9  # the field matters
    lev0 = pot.predict(a, props, level=0)
    assert abs(lev0["energy"] - r0["energy"]) > 1e-9  # so does the level
    assert r0["polarization"].shape == (3,) and r0["direct_dipole"].shape == (3,)
    batch = pot.predict([a, b], props)
    np.testing.assert_allclose(batch[1]["energy"], r1["energy"], atol=1e-12)


@pytest.mark.allow_nans
@pytest.mark.parametrize(
    "edit, kwargs, match",
    [
        (lambda a: a.arrays.pop("charges"), {}, r"structure 1: required input 'charges'"),
        (lambda a: a.info.pop("level"), {}, r"structure 1: required input 'level'"),
        (None, {"level": 2}, r"structure 0: input 'level' = \[2\] is outside \[0, 2\)"),
        (None, {"electric_field": [0.0, np.nan, 0.0]}, r"structure 0: input 'electric_field' "),
        (None, {"electric_field": [0.0, 1.0]}, r"structure 0: input 'electric_field' has shape"),
        (None, {"charges": [0.1, 0.2]}, r"structure 0: input 'charges' has shape"),
    ],
)
def test_bad_inputs(pot, edit, kwargs, match):
    """A keyword applies to every structure, so its error names structure 0."""
    good, bad = _water(), _water()
    if edit is not None:
        edit(bad)
    with pytest.raises(DataError, match=match):
        pot.predict([good, bad], ("energy",), **kwargs)


def test_unknown_keyword_and_unused_input(pot):
    with pytest.raises(TypeError, match="electric_fied"):
        pot.predict(_water(), ("energy",), electric_fied=[0, 0, 1])
    a = _water()
    a.info["magnetic_field"] = [0.0, 0.0, 1.0]
    with pytest.warns(UserWarning, match=r"\['magnetic_field'\] are ignored"):
        pot.predict(a, ("energy",))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pot.predict(a, ("energy",))  # one warning only


def test_calculator_reports_dipole_and_takes_inputs(pot):
    a = _water(field=(0.0, 0.0, 0.0))
    a.calc = TACECalculator(pot, electric_field=[0.0, 0.0, 0.05], level=1)
    e = a.get_potential_energy()
    assert e == pytest.approx(pot.predict(_water(), ("energy",))["energy"], abs=1e-12)
    mu = a.get_dipole_moment()
    np.testing.assert_allclose(mu, pot.predict(_water(), ("polarization",))["polarization"])


def test_save_load_keeps_inputs(pot, tmp_path):
    pot.save(tmp_path / "m.tace")
    back = Potential.load(tmp_path / "m.tace")
    assert back.input_names == pot.input_names
    a = _water()
    assert back.predict(a)["energy"] == pytest.approx(pot.predict(a)["energy"], abs=1e-12)
