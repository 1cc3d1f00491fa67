"""The one input assembler: model inputs of a structure from ``ase.Atoms``, a
:class:`~tace_jax.data.structure.Structure` and keyword overrides (docs/theory.md §2.2, §2.5).

Used by ``Potential.predict``, ``TACECalculator``, ``tace-jax eval``, the jax-md energy
functions and training batches, so the rules live in one place:

* the inputs a model needs are named by the model (``TACEConfig.input_names``); only those are
  read, per the registry :data:`tace_jax.data.fields.INPUTS`;
* per-graph values come from ``atoms.info[name]``, per-atom values from ``atoms.arrays[name]``
  (the reference's key names); a keyword override wins over both;
* a missing input takes its documented default (zero fields, zero total charge) or, where there
  is no physical default (charges, magnetic moments, the level of a multi-level model), raises a
  :class:`~tace_jax.data.errors.DataError` naming the structure and the input;
* shapes, integrality, finiteness and index ranges (``limits``) are checked with the same kind
  of message.

Example:
    >>> import ase
    >>> atoms = ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    >>> atoms.info["electric_field"] = [0.0, 0.0, 0.1]
    >>> v = read_inputs(atoms, ("electric_field", "total_charge"))
    >>> v["electric_field"].tolist(), v["total_charge"].tolist()
    ([[0.0, 0.0, 0.1]], [0.0])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import DataError
from .fields import INPUTS, FieldSpec

__all__ = ["read_inputs", "present_inputs", "check_input_names", "collate_inputs"]


def check_input_names(names: Sequence[str], what: str = "inputs") -> None:
    """Raise ``TypeError`` for names that are not model inputs."""
    bad = [n for n in names if n not in INPUTS]
    if bad:
        raise TypeError(f"unknown {what} {bad}; model inputs are {list(INPUTS)}")


def _lookup(source: Any, spec: FieldSpec):
    """The raw value of ``spec`` in ``source`` (``None`` when absent)."""
    if hasattr(source, "info") and hasattr(source, "arrays"):  # ase.Atoms
        table = source.arrays if spec.per_node else source.info
        return table.get(spec.name)
    value = getattr(source, spec.name, None)  # Structure fields (charges, level, ...)
    if value is None:
        value = (getattr(source, "inputs", None) or {}).get(spec.name)
    return value


def _num_atoms(source: Any) -> int:
    return len(source) if hasattr(source, "arrays") else int(source.n_atoms)


def _validate(spec: FieldSpec, value, n_atoms: int, where: str, limit: int | None):
    lead = (n_atoms,) if spec.per_node else (1,)
    expected = (*lead, *spec.shape)
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: input {spec.name!r} is not numeric ({exc})") from exc
    if a.size != int(np.prod(expected)):
        shown = "[n_atoms" + "".join(f", {d}" for d in spec.shape) + "]"
        if not spec.per_node:
            shown = "a scalar" if not spec.shape else f"a vector of {spec.shape[0]}"
        raise DataError(
            f"{where}: input {spec.name!r} has shape {a.shape}, expected {shown} "
            f"({'per atom' if spec.per_node else 'per structure'})"
        )
    a = a.reshape(expected)
    if not np.all(np.isfinite(a)):
        raise DataError(f"{where}: input {spec.name!r} has non-finite values (NaN/inf)")
    if spec.kind == "int":
        if not np.all(a == np.round(a)):
            raise DataError(f"{where}: input {spec.name!r} must be an integer, got {a.ravel()}")
        a = a.astype(np.int32)
        if limit is not None and (a.min() < 0 or a.max() >= limit):
            raise DataError(
                f"{where}: input {spec.name!r} = {a.ravel().tolist()} is outside [0, {limit}) "
                "for this model"
            )
    return a


def read_inputs(
    source: Any,
    names: Sequence[str],
    overrides: Mapping[str, Any] | None = None,
    where: str = "structure",
    limits: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """The model inputs ``names`` of one structure.

    Args:
        source: an ``ase.Atoms`` or a :class:`~tace_jax.data.structure.Structure`.
        names: the inputs the model uses (registry names).
        overrides: keyword values that win over ``source``.
        where: how error messages name the structure.
        limits: upper bounds (exclusive) of integer inputs, e.g. ``{"level": num_levels}``.

    Returns:
        ``name -> array``: per-graph inputs ``[1, *shape]``, per-atom inputs
        ``[n_atoms, *shape]`` (float64, or int32 for integer inputs), ready to concatenate.

    Raises:
        DataError: a required input is missing, or a value has the wrong shape, is not finite,
            not integral or out of range.
        TypeError: ``names`` or ``overrides`` holds a name that is not a model input.
    """
    overrides = dict(overrides or {})
    check_input_names(names)
    check_input_names(list(overrides), "keyword inputs")
    limits = dict(limits or {})
    n_atoms = _num_atoms(source)
    out: dict[str, np.ndarray] = {}
    for name in names:
        spec = INPUTS[name]
        value = overrides[name] if name in overrides else _lookup(source, spec)
        if value is None:
            if spec.default is None:
                key = "arrays" if spec.per_node else "info"
                raise DataError(
                    f"{where}: required input {name!r} is missing (give atoms.{key}[{name!r}] "
                    f"or the keyword {name}=...)"
                )
            value = np.full(((n_atoms,) if spec.per_node else (1,)) + spec.shape, spec.default)
        out[name] = _validate(spec, value, n_atoms, where, limits.get(name))
    return out


def present_inputs(source: Any, overrides: Mapping[str, Any] | None = None) -> set[str]:
    """Registry inputs that ``source`` or ``overrides`` provide (to warn about unused ones)."""
    found = set(overrides or {})
    for spec in INPUTS.values():
        if _lookup(source, spec) is not None:
            found.add(spec.name)
    return found


def collate_inputs(per_structure: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate the outputs of :func:`read_inputs` of several structures."""
    if not per_structure:
        return {}
    return {k: np.concatenate([d[k] for d in per_structure]) for k in per_structure[0]}
