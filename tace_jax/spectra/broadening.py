"""Lorentzian broadening of stick spectra onto a wavenumber grid (numpy)."""

from __future__ import annotations

import numpy as np

__all__ = ["lorentzian_broaden", "default_grid"]


def lorentzian_broaden(freqs_cm, intensities, grid_cm, width_cm) -> np.ndarray:
    """Sum of area-normalised Lorentzians at ``freqs_cm`` on ``grid_cm``.

    ``I(ν̃) = Σ_k I_k · (γ/π) / ((ν̃ − ν̃_k)² + γ²)`` with ``γ = width_cm / 2`` (``width_cm`` is
    the full width at half maximum), so each peak has area ``I_k`` (peak height
    ``2 I_k / (π · width_cm)``) and the result is in (intensity unit)/cm⁻¹.

    Args:
        freqs_cm: ``[K]`` stick positions, cm⁻¹ (all are used; drop imaginary modes first).
        intensities: ``[K]`` or ``[K, C]`` stick intensities (``C`` channels broadened at once).
        grid_cm: ``[F]`` wavenumbers, cm⁻¹.
        width_cm: FWHM, cm⁻¹ (> 0).

    Returns:
        ``[F]`` or ``[F, C]`` float64.

    Raises:
        ValueError: mismatched shapes or a non-positive width.
    """
    f = np.asarray(freqs_cm, np.float64)
    w = np.asarray(intensities, np.float64)
    g = np.asarray(grid_cm, np.float64)
    if f.ndim != 1:
        raise ValueError(f"freqs_cm must be 1-D [K], got shape {f.shape}")
    if w.ndim not in (1, 2) or w.shape[0] != f.shape[0]:
        raise ValueError(
            f"intensities must be [K] or [K, C] with K = len(freqs_cm) = {len(f)}, "
            f"got shape {w.shape}"
        )
    if g.ndim != 1:
        raise ValueError(f"grid_cm must be 1-D [F], got shape {g.shape}")
    try:
        width = float(width_cm)
    except (TypeError, ValueError) as err:
        raise ValueError(f"width_cm must be a positive number, got {width_cm!r}") from err
    if not np.isfinite(width) or width <= 0:
        raise ValueError(f"width_cm must be a positive number, got {width_cm!r}")
    gamma = 0.5 * width
    shape = (gamma / np.pi) / ((g[:, None] - f[None, :]) ** 2 + gamma**2)  # [F, K]
    return shape @ w


def default_grid(freqs_cm, width_cm: float, step_cm: float = 1.0, max_cm=None) -> np.ndarray:
    """``0, step, …`` up to ``max_cm`` (default: the highest mode + 10 widths, ≥ 100 cm⁻¹)."""
    if not step_cm > 0:
        raise ValueError(f"grid_step_cm must be > 0, got {step_cm!r}")
    f = np.asarray(freqs_cm, np.float64)
    if max_cm is None:
        top = float(f.max(initial=0.0)) + 10.0 * float(width_cm)
        max_cm = max(100.0, top)
    elif not max_cm > 0:
        raise ValueError(f"grid_max_cm must be > 0, got {max_cm!r}")
    return np.arange(0.0, float(max_cm) + 0.5 * step_cm, step_cm)
