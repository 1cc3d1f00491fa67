"""Pure ``jnp`` maths of TACE (layer 0): ICT algebra, radial basis, ZBL, scatter, fused couplings.

* ICT machinery (docs/theory.md §1): STF bases and projectors, layouts, Cartesian harmonics,
  ICTD, the irreducible coupling and its path lists;
* edge features (§2.3) and the ZBL pair repulsion (§2.9);
* edge-to-node scatter sums streamed over edge chunks, and the fused multi-path couplings of the
  interaction (§2.4) and the product basis (§2.6);
* element-dependent linear maps and dense chains (§1.6); NaN-safe norms; pytree casting;
* latent Ewald summation and its Born effective charges (§4).

Everything here works under ``jit``, ``vmap`` and ``grad`` in float32 and float64, for any rank.
Constant matrices (``Q_l``, ``Π_l``, ``K^{(l1 l2 l3)}``) are built once in float64 numpy and cached.
"""

from ._charges import CHARGE_HEADS as CHARGE_HEADS
from ._charges import lagrangian_charges as lagrangian_charges
from ._charges import uniform_charges as uniform_charges
from ._coupling import L1L2_OPTIONS as L1L2_OPTIONS
from ._coupling import contraction_order as contraction_order
from ._coupling import couple as couple
from ._coupling import coupling_paths as coupling_paths
from ._coupling import coupling_tensor as coupling_tensor
from ._coupling import is_allowed as is_allowed
from ._coupling import rank_relation as rank_relation
from ._element_sort import budgets_exceeded as budgets_exceeded
from ._element_sort import element_budgets as element_budgets
from ._element_sort import element_layout as element_layout
from ._element_sort import sorted_element_linear_sum as sorted_element_linear_sum
from ._element_sort import take_rows as take_rows
from ._fused import block_order as block_order
from ._fused import couple_batched as couple_batched
from ._fused import edge_message_blocks as edge_message_blocks
from ._fused import edge_messages as edge_messages
from ._fused import message_blocks as message_blocks
from ._fused import product_step as product_step
from ._gate import GATES as GATES
from ._gate import vector_gate as vector_gate
from ._harmonics import cartesian_harmonics as cartesian_harmonics
from ._ictd import decompose as decompose
from ._ictd import ictd_path_bases as ictd_path_bases
from ._ictd import ictd_paths as ictd_paths
from ._ictd import ictd_projectors as ictd_projectors
from ._layout import irreps_to_matrix as irreps_to_matrix
from ._layout import matrix_to_irreps as matrix_to_irreps
from ._layout import to_compressed as to_compressed
from ._layout import to_full as to_full
from ._linear import element_linear as element_linear
from ._linear import element_linear_sum as element_linear_sum
from ._linear import element_select as element_select
from ._linear import grouped_element_linear as grouped_element_linear
from ._linear import mlp_alphas as mlp_alphas
from ._linear import mlp_apply as mlp_apply
from ._product_plan import coupling_is_symmetric as coupling_is_symmetric
from ._product_plan import merge_blocks as merge_blocks
from ._product_plan import merge_index as merge_index
from ._product_plan import product_plan as product_plan
from ._radial import bessel_basis as bessel_basis
from ._radial import polynomial_envelope as polynomial_envelope
from ._radial import radial_features as radial_features
from ._safe import safe_norm as safe_norm
from ._safe import safe_normalize as safe_normalize
from ._segment import default_edge_chunk as default_edge_chunk
from ._segment import scan_edges as scan_edges
from ._stf import harmonic_norm as harmonic_norm
from ._stf import stf_basis as stf_basis
from ._stf import stf_projector as stf_projector
from ._tree import cast_floats as cast_floats
from ._zbl import COVALENT_RADII as COVALENT_RADII
from ._zbl import zbl_node_energy as zbl_node_energy
from .ewald_periodic import ewald_kgrid as ewald_kgrid
from .ewald_periodic import kgrid_fits as kgrid_fits
from .latent_ewald import NORM_FACTOR_V010 as NORM_FACTOR_V010
from .latent_ewald import latent_ewald as latent_ewald
from .latent_ewald import latent_ewald_graph as latent_ewald_graph
from .les_bec import les_bec as les_bec
from .les_bec import les_bec_graph as les_bec_graph
from .polarization import fold_polarization as fold_polarization

__all__ = [
    "fold_polarization",
    "GATES",
    "vector_gate",
    "CHARGE_HEADS",
    "lagrangian_charges",
    "uniform_charges",
    "COVALENT_RADII",
    "L1L2_OPTIONS",
    "bessel_basis",
    "cartesian_harmonics",
    "cast_floats",
    "contraction_order",
    "couple",
    "couple_batched",
    "coupling_paths",
    "coupling_tensor",
    "decompose",
    "default_edge_chunk",
    "edge_messages",
    "edge_message_blocks",
    "message_blocks",
    "block_order",
    "budgets_exceeded",
    "element_budgets",
    "element_layout",
    "element_linear",
    "element_linear_sum",
    "grouped_element_linear",
    "element_select",
    "harmonic_norm",
    "ictd_path_bases",
    "ictd_paths",
    "ictd_projectors",
    "irreps_to_matrix",
    "is_allowed",
    "matrix_to_irreps",
    "mlp_alphas",
    "mlp_apply",
    "polynomial_envelope",
    "product_plan",
    "merge_blocks",
    "merge_index",
    "product_step",
    "coupling_is_symmetric",
    "radial_features",
    "rank_relation",
    "safe_norm",
    "safe_normalize",
    "scan_edges",
    "sorted_element_linear_sum",
    "stf_basis",
    "stf_projector",
    "take_rows",
    "to_compressed",
    "to_full",
    "zbl_node_energy",
    "NORM_FACTOR_V010",
    "ewald_kgrid",
    "kgrid_fits",
    "latent_ewald",
    "latent_ewald_graph",
    "les_bec",
    "les_bec_graph",
]
