"""Flax linen building blocks of TACE (parameters only; the maths is in ``tace_jax.ops``)."""

from .embedding import NodeEmbedding as NodeEmbedding
from .gate import NormGate as NormGate
from .interaction import Interaction as Interaction
from .interaction import interaction_paths as interaction_paths
from .linear import DenseWeights as DenseWeights
from .linear import ElementLinear as ElementLinear
from .linear import Linear as Linear
from .product import Product as Product
from .product import product_paths as product_paths
from .readout import ScalarReadout as ScalarReadout
from .readout import TensorReadout as TensorReadout
from .uee import UniversalEquivariantEmbedding as UniversalEquivariantEmbedding
from .uie import UniversalInvariantEmbedding as UniversalInvariantEmbedding

__all__ = [
    "DenseWeights",
    "ElementLinear",
    "Interaction",
    "Linear",
    "NodeEmbedding",
    "NormGate",
    "Product",
    "ScalarReadout",
    "TensorReadout",
    "UniversalEquivariantEmbedding",
    "UniversalInvariantEmbedding",
    "interaction_paths",
    "product_paths",
]
