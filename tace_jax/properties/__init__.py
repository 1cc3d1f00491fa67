"""Derived properties of an energy model: forces, stress, virials, edge forces, atomic
virials/stresses and field responses (polarization, polarizability, Born charges,
magnetization, susceptibility, magnetic forces) from :func:`compute_properties`, and Hessians
(:func:`hessian`, :func:`hessian_rows`)."""

from .derivatives import DERIVED_PROPERTIES as DERIVED_PROPERTIES
from .derivatives import PROPERTY_NAMES as PROPERTY_NAMES
from .derivatives import cell_volume as cell_volume
from .derivatives import compute_properties as compute_properties
from .derivatives import strained as strained
from .hessian import hessian as hessian
from .hessian import hessian_rows as hessian_rows
from .hessian import split_hessian as split_hessian
from .response import RESPONSE_INPUTS as RESPONSE_INPUTS
from .response import RESPONSE_PROPERTIES as RESPONSE_PROPERTIES
from .response import RESPONSE_SHAPES as RESPONSE_SHAPES
