"""Vibrational spectra: IR and Raman from MD time series and from harmonic response properties.

``docs/theory.md §3`` (spectra utilities; TACE paper, arXiv 2509.14961).
"""

from tace_jax.properties.normal_modes import NormalModes as NormalModes
from tace_jax.properties.normal_modes import normal_modes as normal_modes

from .broadening import lorentzian_broaden as lorentzian_broaden
from .correlation import autocorrelation as autocorrelation
from .correlation import cosine_transform as cosine_transform
from .correlation import lag_window as lag_window
from .harmonic import harmonic_ir as harmonic_ir
from .harmonic import harmonic_raman as harmonic_raman
from .harmonic import ir_intensities as ir_intensities
from .harmonic import raman_activities as raman_activities
from .md_spectra import correlation_spectrum as correlation_spectrum
from .md_spectra import ir_from_dipoles as ir_from_dipoles
from .md_spectra import raman_from_polarizabilities as raman_from_polarizabilities
from .quantum import quantum_correction_factor as quantum_correction_factor

__all__ = [
    "ir_from_dipoles",
    "raman_from_polarizabilities",
    "harmonic_ir",
    "harmonic_raman",
    "lorentzian_broaden",
    "correlation_spectrum",
    "autocorrelation",
    "lag_window",
    "cosine_transform",
    "quantum_correction_factor",
    "normal_modes",
    "NormalModes",
    "ir_intensities",
    "raman_activities",
]
