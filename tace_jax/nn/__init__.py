"""Flax linen building blocks of TACE (parameters only; maths in ``tace_jax.ops``)."""

from .embedding import NodeEmbedding as NodeEmbedding
from .gate import NormGate as NormGate
from .interaction import Interaction as Interaction
from .interaction import interaction_paths as interaction_paths
from .linear import MLP as MLP
from .linear import ElementLinear as ElementLinear
from .linear import Linear as Linear
from .product import Product as Product
from .product import product_paths as product_paths
from .radial import bessel_basis as bessel_basis
from .radial import polynomial_envelope as polynomial_envelope
from .radial import radial_features as radial_features
from .readout import ScalarReadout as ScalarReadout
from .readout import TensorReadout as TensorReadout
from .zbl import zbl_node_energy as zbl_node_energy

__all__ = [
    "ElementLinear",
    "Interaction",
    "Linear",
    "MLP",
    "NodeEmbedding",
    "NormGate",
    "Product",
    "ScalarReadout",
    "TensorReadout",
    "bessel_basis",
    "interaction_paths",
    "polynomial_envelope",
    "product_paths",
    "radial_features",
    "zbl_node_energy",
]
