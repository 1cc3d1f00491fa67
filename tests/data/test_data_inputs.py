"""The input registry and the one input assembler (issue 9, Build 1)."""

from __future__ import annotations

import ase
import numpy as np
import pytest

from tace_jax.data import DataError, Structure
from tace_jax.data.batch import BatchAssembler
from tace_jax.data.fields import GRAPH_FIELDS, INPUTS, NODE_FIELDS
from tace_jax.data.inputs import present_inputs, read_inputs
from tace_jax.data.readers import structure_from_atoms, structure_to_atoms


def _water():
    return ase.Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])


def test_registry_is_the_one_rule():
    assert set(INPUTS) == {
        "level",
        "spin_on",
        "spin_multiplicity",
        "total_charge",
        "temperature",
        "electron_temperature",
        "electric_field",
        "magnetic_field",
        "charges",
        "initial_collinear_magmoms",
        "initial_noncollinear_magmoms",
    }
    for name, spec in INPUTS.items():
        assert (name in NODE_FIELDS) == spec.per_node
        assert (name in GRAPH_FIELDS) == (not spec.per_node)
    assert INPUTS["magnetic_field"].axial and INPUTS["initial_noncollinear_magmoms"].axial
    assert not INPUTS["electric_field"].axial


def test_defaults_info_arrays_and_keyword_override():
    atoms = _water()
    v = read_inputs(atoms, ("electric_field", "total_charge", "magnetic_field"))
    assert v["electric_field"].tolist() == [[0.0, 0.0, 0.0]]
    assert v["total_charge"].tolist() == [0.0]
    atoms.info["electric_field"] = [0.1, 0.2, 0.3]
    atoms.arrays["charges"] = np.array([-0.8, 0.4, 0.4])
    v = read_inputs(atoms, ("electric_field", "charges"))
    np.testing.assert_allclose(v["electric_field"], [[0.1, 0.2, 0.3]])
    np.testing.assert_allclose(v["charges"], [-0.8, 0.4, 0.4])
    v = read_inputs(atoms, ("electric_field",), {"electric_field": [0, 0, 1]})
    np.testing.assert_allclose(v["electric_field"], [[0, 0, 1]])
    assert present_inputs(atoms, {"level": 1}) == {"electric_field", "charges", "level"}


@pytest.mark.allow_nans
@pytest.mark.parametrize(
    "names, source, overrides, match",
    [
        (("charges",), {}, {}, r"structure 7: required input 'charges' is missing"),
        (("level",), {}, {}, r"structure 7: required input 'level'"),
        (("electric_field",), {"electric_field": [1, 2]}, {}, r"'electric_field' has shape"),
        (("charges",), {}, {"charges": [1.0, 2.0]}, r"'charges' has shape"),
        (("electric_field",), {}, {"electric_field": [np.nan, 0, 0]}, r"non-finite"),
        (("level",), {"level": 3}, {}, r"'level' = \[3\] is outside \[0, 3\)"),
        (("level",), {"level": 1.5}, {}, r"'level' must be an integer"),
    ],
)
def test_bad_inputs_name_structure_and_field(names, source, overrides, match):
    atoms = _water()
    atoms.info.update(source)
    with pytest.raises(DataError, match=match):
        read_inputs(atoms, names, overrides, "structure 7", limits={"level": 3})


def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="electric_feild"):
        read_inputs(_water(), ("electric_field",), {"electric_feild": [0, 0, 1]})


def test_structure_round_trip_and_batches(tmp_path):
    atoms = _water()
    atoms.info["magnetic_field"] = [0.0, 0.5, 0.0]
    atoms.arrays["initial_collinear_magmoms"] = np.array([1.0, 0.0, -1.0])
    atoms.arrays["charges"] = np.array([-0.8, 0.4, 0.4])
    s = structure_from_atoms(atoms, source=("w.xyz", 3))
    assert set(s.inputs) == {"magnetic_field", "initial_collinear_magmoms"}
    back = structure_to_atoms(s)
    np.testing.assert_allclose(back.info["magnetic_field"], [0.0, 0.5, 0.0])
    np.testing.assert_allclose(back.arrays["charges"], [-0.8, 0.4, 0.4])
    names = ("magnetic_field", "initial_collinear_magmoms", "charges", "electric_field")
    asm = BatchAssembler([s, s], 3.0, [1, 8], dtype="float64", inputs=names)
    g = asm.assemble([0, 1], budgets=(8, 16, 3))
    assert g.extras["magnetic_field"].shape == (3, 3)
    np.testing.assert_allclose(g.extras["magnetic_field"][:2], [[0, 0.5, 0]] * 2)
    assert g.extras["magnetic_field"][2].tolist() == [0, 0, 0]  # padding graph
    assert g.extras["initial_collinear_magmoms"].shape == (8,)
    np.testing.assert_allclose(g.extras["initial_collinear_magmoms"][:6], [1, 0, -1] * 2)
    bare = Structure(numbers=[8, 1, 1], positions=atoms.positions, source=("w.xyz", 9))
    asm = BatchAssembler([s, bare], 3.0, [1, 8], dtype="float64", inputs=names)
    with pytest.raises(
        DataError,
        match=r"w.xyz, frame 9: required input 'magnetic_field'|"
        r"w.xyz, frame 9: required input 'initial_collinear_magmoms'",
    ):
        asm.assemble([0, 1], budgets=(8, 16, 3))


def test_structure_rejects_unknown_inputs():
    with pytest.raises(DataError, match="field 'inputs'"):
        Structure(numbers=[1], positions=[[0, 0, 0]], inputs={"colour": 1})
