"""What a potential must provide for the ASE calculator, molecular dynamics and vibrations.

:class:`PotentialProtocol` is a structural type (:class:`typing.Protocol`): any object with
these members works, whether it is the trained :class:`tace_jax.inference.Potential` or an
analytic test double such as :class:`tace_jax.testing.MorsePotential`. Nothing here imports
from the package, so the protocol can move to any layer (it is meant for
``tace_jax.inference``).

Units: Å, eV, amu; stress in eV/Å³ with ASE's sign.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["PROTOCOL_MEMBERS", "PotentialProtocol", "input_limits_of", "input_names_of"]

#: The required members of :class:`PotentialProtocol` (for error messages).
PROTOCOL_MEMBERS = (
    "apply_fn",
    "variables",
    "cutoff",
    "atomic_numbers",
    "dtype",
    "predict",
    "hessian",
    "astype",
)


@runtime_checkable
class PotentialProtocol(Protocol):
    """The members the calculator, ``tace_jax.md`` and ``tace_jax.vib`` rely on.

    Attributes:
        cutoff: radial cutoff in Å; edges are the pairs closer than it.
        atomic_numbers: the model's elements, sorted; a node's ``species`` is the index of its
            atomic number in this tuple.
        dtype: the computation dtype (``float32`` or ``float64``, numpy dtype or its name).
        variables: the model variables (a pytree), in ``dtype``.

    Optional members: ``input_names`` (read with :func:`input_names_of`), the model inputs the
    energy reads from ``graph.extras`` (``electric_field``, ``level``, …, see
    ``tace_jax.data.fields.INPUTS``; without it the potential reads geometry only), and
    ``input_limits`` (:func:`input_limits_of`), exclusive upper bounds of integer inputs such
    as ``{"level": num_levels}``.
    """

    cutoff: float
    atomic_numbers: Sequence[int]
    dtype: Any
    variables: Any

    def apply_fn(self, variables: Any, graph: Any, edge_vecs: Any = None) -> Mapping[str, Any]:
        """Pure model call on a padded graph; returns at least ``"energy"`` ``[G]`` (eV).

        It must be traceable (``jax.jit``/``jax.grad`` through ``variables``, the graph's
        positions and cell, and ``edge_vecs``) and depend only on the graph fields and on the
        ``graph.extras`` entries named by ``input_names``.
        """
        ...

    def predict(self, atoms: Any, properties: Sequence[str] = ...) -> Any:
        """Properties of one ``ase.Atoms`` (or a list): ``energy`` (eV), ``forces`` ``[N, 3]``
        (eV/Å) and ``stress`` ``[3, 3]`` (eV/Å³); one dict per structure for a list."""
        ...

    def hessian(self, atoms: Any) -> Any:
        """``∂²E/∂x∂x`` of one structure, ``[N, 3, N, 3]`` or ``[3N, 3N]`` (eV/Å²)."""
        ...

    def astype(self, dtype: Any) -> PotentialProtocol:
        """The same potential computing in ``dtype``."""
        ...


def input_names_of(potential: Any) -> tuple[str, ...]:
    """The model inputs ``potential`` reads from ``graph.extras`` (empty: geometry only).

    Reads ``potential.input_names``, else ``potential.config.input_names``.
    """
    names = getattr(potential, "input_names", None)
    if names is None:
        names = getattr(getattr(potential, "config", None), "input_names", ())
    return tuple(str(n) for n in names)


def input_limits_of(potential: Any) -> dict[str, int]:
    """Exclusive upper bounds of the integer inputs of ``potential`` (``{"level": 3}``).

    Reads ``potential.input_limits``, else ``potential.predictor.input_limits``.
    """
    limits = getattr(potential, "input_limits", None)
    if limits is None:
        limits = getattr(getattr(potential, "predictor", None), "input_limits", None)
    return {str(k): int(v) for k, v in dict(limits or {}).items()}
