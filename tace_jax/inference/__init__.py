"""Inference on top of the assembled model: the padded-batch :class:`Predictor` (buckets,
compile cache, output splitting) and the user-facing :class:`Potential`."""

from .potential import Potential as Potential
from .potential import PotentialFormatError as PotentialFormatError
from .predictor import GRAPH_OUTPUTS as GRAPH_OUTPUTS
from .predictor import Predictor as Predictor
from .predictor import bucket as bucket

__all__ = ["GRAPH_OUTPUTS", "Potential", "PotentialFormatError", "Predictor", "bucket"]
