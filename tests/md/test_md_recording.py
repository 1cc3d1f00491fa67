"""Response recording along MD (issue 10): dipole/P and α every k steps, evaluated in batches.

A tiny TACE field model (``electric_field`` embedding): the recorded series equal
``Potential.predict`` on the recorded frames, frames are taken only every k steps, and a model
without a field input or a dipole head is refused with a clear error.
"""

from __future__ import annotations

import ase
import jax
import numpy as np
import pytest

from tace_jax.inference import Potential
from tace_jax.md import Simulation, run_md
from tace_jax.md.recording import ResponseRecorder, response_property
from tace_jax.models import Statistics, TACEConfig

FIELD = np.array([0.0, 0.0, 0.05])


def tiny_field_potential() -> Potential:
    """A tiny float64 TACE model with an electric-field embedding (P, α and Z* available)."""
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
        targets=("energy",),
        equivariant_embeddings=("electric_field",),
    )
    return Potential.init(cfg, Statistics.default(2), jax.random.key(3), dtype="float64")


def water() -> ase.Atoms:
    return ase.Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0.1]])


@pytest.fixture(scope="module")
def pot():
    return tiny_field_potential()


def test_recorded_series_equal_predict_on_the_recorded_frames(pot):
    k = 3
    rec = ResponseRecorder(
        pot, ("dipole", "polarizability"), every=k, batch_size=2, inputs={"electric_field": FIELD}
    )
    sim = Simulation(
        pot,
        water(),
        ensemble="nve",
        temperature=100.0,
        timestep=0.5,
        inputs={"electric_field": FIELD},
    )
    sim.run(4 * k, log_interval=2 * k, progress=False, recorder=rec)
    assert rec.steps == [0, 3, 6, 9, 12]
    assert rec.dt_fs == pytest.approx(1.5)
    traces = pot.trace_count
    out = rec.compute()
    # 5 frames in batches of 2: the short last batch is padded, so one compiled shape
    assert pot.trace_count - traces == 1
    assert out["property_dipole"] == "polarization"
    assert out["property_polarizability"] == "conservative_polarizability"
    assert out["dipole"].shape == (5, 3) and out["polarizability"].shape == (5, 3, 3)
    frames = rec.atoms()
    # the reference in the recorder's batch shape (2 graphs), so nothing new is compiled
    props = ("polarization", "conservative_polarizability")
    ref = pot.predict(frames[:4] + frames[-1:] * 2, props, batch_size=2, electric_field=FIELD)[:5]
    assert pot.trace_count - traces == 1
    np.testing.assert_allclose(out["dipole"], [r["polarization"] for r in ref], atol=1e-12)
    np.testing.assert_allclose(
        out["polarizability"], [r["conservative_polarizability"] for r in ref], atol=1e-12
    )
    # the last frame is the simulation's final state, and the series moves with the atoms
    np.testing.assert_allclose(frames[-1].positions, sim.get_atoms().positions, atol=1e-12)
    assert np.ptp(out["dipole"], axis=0).max() > 0


@pytest.mark.slow  # compiles a second MD chunk
def test_run_md_forwards_the_recorder(pot):
    # run_md forwards the recorder; a second run does not duplicate step 0
    rec2 = ResponseRecorder(pot, "dipole", every=2, inputs={"electric_field": FIELD})
    run_md(
        pot, water(), 4, ensemble="nve", temperature=100.0, timestep=0.5, log_interval=2,
        inputs={"electric_field": FIELD}, recorder=rec2,
    )  # fmt: skip
    assert rec2.steps == [0, 2, 4]


def test_response_property_choice_and_errors(pot):
    assert response_property(pot, "dipole") == "polarization"

    class DirectHeads:
        input_names = ()

        def config_heads(self):
            return ("energy", "direct_dipole")

    assert response_property(DirectHeads(), "dipole") == "direct_dipole"
    with pytest.raises(ValueError, match="cannot record polarizability"):
        response_property(DirectHeads(), "polarizability")
    with pytest.raises(ValueError, match="unknown response kind"):
        response_property(pot, "charges")
    with pytest.raises(ValueError, match="every must be >= 1"):
        ResponseRecorder(pot, every=0)
    with pytest.raises(ValueError, match="nothing recorded"):
        ResponseRecorder(pot).compute()
