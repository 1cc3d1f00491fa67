"""Pure functions for irreducible Cartesian tensors (ICT): STF bases, harmonics, ICTD, coupling.

Everything here works under ``jit``, ``vmap`` and ``grad`` in float32 and float64, for any rank.
Constant matrices (``Q_l``, ``Π_l``, ``K^{(l1 l2 l3)}``) are built once in float64 numpy and cached.
"""

from ._coupling import contraction_order as contraction_order
from ._coupling import couple as couple
from ._coupling import coupling_paths as coupling_paths
from ._coupling import coupling_tensor as coupling_tensor
from ._coupling import is_allowed as is_allowed
from ._harmonics import cartesian_harmonics as cartesian_harmonics
from ._ictd import decompose as decompose
from ._ictd import ictd_path_bases as ictd_path_bases
from ._ictd import ictd_paths as ictd_paths
from ._ictd import ictd_projectors as ictd_projectors
from ._layout import irreps_to_matrix as irreps_to_matrix
from ._layout import matrix_to_irreps as matrix_to_irreps
from ._layout import to_compressed as to_compressed
from ._layout import to_full as to_full
from ._safe import safe_norm as safe_norm
from ._safe import safe_normalize as safe_normalize
from ._stf import harmonic_norm as harmonic_norm
from ._stf import stf_basis as stf_basis
from ._stf import stf_projector as stf_projector
from ._tree import cast_floats as cast_floats

__all__ = [
    "cartesian_harmonics",
    "cast_floats",
    "contraction_order",
    "couple",
    "coupling_paths",
    "coupling_tensor",
    "decompose",
    "harmonic_norm",
    "ictd_path_bases",
    "ictd_paths",
    "ictd_projectors",
    "irreps_to_matrix",
    "is_allowed",
    "matrix_to_irreps",
    "safe_norm",
    "safe_normalize",
    "stf_basis",
    "stf_projector",
    "to_compressed",
    "to_full",
]
