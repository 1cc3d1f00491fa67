"""Underdetermined E0 fits: rank-deficiency warning, isolated atoms, the recorded E0 span."""

import warnings
from pathlib import Path

import ase
import jax
import numpy as np
import pytest

from tace_jax.data import Structure
from tace_jax.data.errors import DataError
from tace_jax.data.statistics import (
    compute_statistics,
    e0_span,
    isolated_atom_energies,
    read_e0s_file,
)
from tace_jax.inference import Potential
from tace_jax.models import Statistics, TACEConfig
from tace_jax.train.prepare import to_model_statistics

E0 = {1: -13.6, 6: -1029.5, 8: -2042.0}


def _mol(symbols, energy=None, pbc=False, seed=0, frame=0):
    rng = np.random.default_rng(seed)
    a = ase.Atoms(symbols)
    n = len(a)
    pos = np.arange(n)[:, None] * np.array([1.2, 0.0, 0.0]) + 0.05 * rng.standard_normal((n, 3))
    if energy is None:
        energy = sum(E0[int(z)] for z in a.numbers) + 0.01 * rng.standard_normal()
    return Structure(
        numbers=a.numbers,
        positions=pos,
        cell=np.eye(3) * (20.0 if pbc else 0.0),
        pbc=np.array([pbc] * 3),
        energy=energy,
        forces=np.zeros((n, 3)),
        source=("mem.xyz", frame),
    )


def _stats(structures, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        st = compute_statistics(structures, [1, 6, 8], 3.0, scale_type=None, **kw)
    return st, [str(x.message) for x in w if "e0s" in str(x.message)]


def test_single_composition_warns_and_names_elements():
    st, msgs = _stats([_mol("C2H6O", seed=k, frame=k) for k in range(5)])
    assert st["e0_undetermined"] == [[1, 6, 8]]
    assert len(msgs) == 1 and "rank deficient" in msgs[0]
    assert "H (Z=1), C (Z=6), O (Z=8) is not determined" in msgs[0]
    assert st["warnings"] == msgs
    assert np.asarray(st["e0_span"][0]).shape == (1, 3)


def test_partly_determined_names_only_those():
    # CO and CO2 fix C and O; H only appears as H2O together with O: still determined.
    # CH4 alone with C fixed: H determined. Drop CH4 and H2O -> H absent (no warning).
    frames = [_mol("CO"), _mol("CO2", seed=1), _mol("CH4", seed=2), _mol("CH4", seed=3)]
    st, msgs = _stats(frames)
    assert msgs == [] and st["e0_span"] == [None]
    # H and O only as water: H2O and H4O2 are the same direction -> H, O undetermined, C fine
    frames = [_mol("C"), _mol("C2", seed=1), _mol("H2O", seed=2), _mol("H2O", seed=3)]
    st, msgs = _stats(frames)
    assert st["e0_undetermined"] == [[1, 8]] and "H (Z=1), O (Z=8)" in msgs[0]


def test_full_rank_is_silent_and_recovers_e0():
    frames = [_mol(s, seed=k) for k, s in enumerate(("CH4", "H2O", "CO2", "C2H6O", "H2"))]
    st, msgs = _stats(frames)
    assert msgs == [] and st["e0_undetermined"] == [[]] and st["e0_span"] == [None]
    np.testing.assert_allclose(st["atomic_energies"][0], [E0[1], E0[6], E0[8]], atol=0.05)


def test_single_atom_frames_fix_e0():
    frames = [_mol("C2H6O", seed=k) for k in range(3)]
    iso = [_mol("H", energy=-13.0, frame=10), _mol("C", energy=-1030.0, frame=11)]
    st, msgs = _stats(frames + iso)
    assert st["e0_isolated"] == [{"1": -13.0, "6": -1030.0}]
    e0 = st["atomic_energies"][0]
    assert e0[0] == -13.0 and e0[1] == -1030.0  # fixed, and O fitted to the rest
    assert msgs == [] and st["e0_span"] == [None]
    # a periodic one-atom cell is a crystal, not an isolated atom
    st, msgs = _stats(frames + [_mol("H", energy=-13.0, pbc=True)])
    assert st["e0_isolated"] == [{}] and msgs


def test_conflicting_isolated_atoms():
    with pytest.raises(DataError, match=r"element 1 differ: -13.0 eV \(mem.xyz, frame 1\)"):
        isolated_atom_energies([_mol("H", -13.0, frame=1), _mol("H", -14.0, frame=2)])


def test_span_basis():
    basis, bad = e0_span(np.array([[2.0, 6, 1], [4, 12, 2]]))
    assert basis.shape == (1, 3) and bad == [0, 1, 2]
    basis, bad = e0_span(np.array([[1.0, 1, 0]]), fixed=[0])
    assert bad == [2] and basis.shape == (2, 3)


def test_e0s_file(tmp_path):
    p = tmp_path / "iso_atoms.xyz"
    p.write_text(
        "".join(
            f'1\nProperties=species:S:1:pos:R:3 energy={e} pbc="F F F"\n{s} 0.0 0.0 0.0\n'
            for s, e in (("C", -1029.5), ("H", -13.6), ("O", -2042.0))
        )
    )
    assert read_e0s_file(p) == {6: -1029.5, 1: -13.6, 8: -2042.0}
    p2 = tmp_path / "bad_iso.xyz"
    p2.write_text('2\nProperties=species:S:1:pos:R:3 energy=-1.0 pbc="F F F"\nH 0 0 0\nH 0 0 1\n')
    with pytest.raises(DataError, match=r"bad_iso.xyz, frame 0: e0s file frame has 2 atoms"):
        read_e0s_file(p2)


def test_3bpa_iso_atoms():
    """The real isolated-atom file of 3BPA (copied into tests/fixtures/data, MIT)."""
    path = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "3bpa_iso_atoms.xyz"
    e0 = read_e0s_file(path)
    assert sorted(e0) == [1, 6, 7, 8] and abs(e0[1] - -13.587222780835477) < 1e-9


def test_statistics_span_roundtrip_and_old_files():
    st, _ = _stats([_mol("C2H6O", seed=k) for k in range(3)])
    stats = to_model_statistics(st)
    assert stats.e0_span is not None and len(stats.e0_span) == 1
    d = stats.to_dict()
    assert "e0_span" in d and Statistics.from_dict(d) == stats
    old = {k: v for k, v in d.items() if k != "e0_span"}  # a file written before the field
    assert Statistics.from_dict(old).e0_span is None
    assert "e0_span" not in Statistics.default(3).to_dict()
    hash(stats)  # a Flax module attribute: must stay hashable


def _tiny_config():
    return TACEConfig(
        atomic_numbers=(1, 6, 8),
        num_channel=4,
        radial_hidden=(8,),
        num_layers=1,
        correlation=2,
        lmax_node=1,
        lmax_edge=1,
        cutoff=3.0,
    )


class _NoCompute:
    """Stands in for the Predictor: the warning is raised before any computation."""

    input_names = ()

    def predict(self, variables, atoms_list, *args):
        return [{"energy": 0.0} for _ in atoms_list]


def test_predict_hook_warns_once():
    st, _ = _stats([_mol("C2H6O", seed=k) for k in range(3)])
    pot = Potential.__new__(Potential)  # no compile: only the warning path of predict
    pot.config, pot.statistics, pot.variables = _tiny_config(), to_model_statistics(st), {}
    pot.predictor = _NoCompute()
    stats = pot.statistics
    zs = (1, 6, 8)
    assert stats.e0_span_warning([ase.Atoms("C2H6O").numbers] * 2, zs) is None
    assert stats.e0_span_warning([ase.Atoms("C4H12O2").numbers], zs) is None  # a multiple
    assert "structure 1 (CH4)" in stats.e0_span_warning(
        [[6, 6, 1, 1, 1, 1, 1, 1, 8], [6] + [1] * 4], zs
    )
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        pot.predict(ase.Atoms("C2H6O"), ("energy",))
        assert not w
        pot.predict([ase.Atoms("C2H6O"), ase.Atoms("H")], ("energy",))
        pot.predict(ase.Atoms("O"), ("energy",))
    assert [str(x.message)[:42] for x in w] == ["structure 1 (H): its composition is not a "]


@pytest.mark.slow
def test_predict_warns_once_outside_span():
    st, _ = _stats([_mol("C2H6O", seed=k) for k in range(3)])
    cfg = _tiny_config()
    stats = to_model_statistics(st)
    pot = Potential.init(cfg, stats, jax.random.key(0), dtype="float32")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        pot.predict(ase.Atoms("H"), ("energy",))
        pot.predict(ase.Atoms("H"), ("energy",))  # once per Potential
    msgs = [str(x.message) for x in w if "composition" in str(x.message)]
    assert len(msgs) == 1 and msgs[0].startswith("structure 0 (H): its composition is not")
    assert "'e0s'" in msgs[0]
