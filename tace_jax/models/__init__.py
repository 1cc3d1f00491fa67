"""The assembled TACE model: configuration, statistics, the Flax module, reference-weight
import and the versioned model file."""

from .config import TACEConfig as TACEConfig
from .format import PotentialFormatError as PotentialFormatError
from .reference import load_reference as load_reference
from .statistics import Statistics as Statistics
from .tace import TACE as TACE

__all__ = ["PotentialFormatError", "Statistics", "TACE", "TACEConfig", "load_reference"]
