"""The assembled TACE model, its configuration and statistics, and reference-weight import."""

from .config import TACEConfig as TACEConfig
from .potential import Potential as Potential
from .reference import load_reference as load_reference
from .statistics import Statistics as Statistics
from .tace import TACE as TACE

__all__ = ["Potential", "Statistics", "TACE", "TACEConfig", "load_reference"]
