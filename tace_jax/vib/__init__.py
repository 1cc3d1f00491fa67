"""Harmonic vibrations (normal modes, Γ-point phonons), zero-point energy and spectra."""

from .harmonic import VibrationResult as VibrationResult
from .harmonic import harmonic_analysis as harmonic_analysis
from .harmonic import hessian_matrix as hessian_matrix
from .harmonic import rigid_body_vectors as rigid_body_vectors
from .harmonic import vibrational_analysis as vibrational_analysis
from .spectrum import ir_intensities as ir_intensities
from .spectrum import lorentzian_spectrum as lorentzian_spectrum
from .spectrum import plot_spectrum as plot_spectrum

__all__ = [
    "VibrationResult",
    "harmonic_analysis",
    "hessian_matrix",
    "rigid_body_vectors",
    "vibrational_analysis",
    "ir_intensities",
    "lorentzian_spectrum",
    "plot_spectrum",
]
