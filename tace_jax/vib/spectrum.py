"""Broadened vibrational spectra and a PNG plot (matplotlib, Agg canvas; no global backend)."""

from __future__ import annotations

import pathlib

import numpy as np

from .harmonic import VibrationResult

__all__ = ["lorentzian_spectrum", "ir_intensities", "plot_spectrum"]


def lorentzian_spectrum(frequencies, grid, width: float = 10.0, intensities=None) -> np.ndarray:
    """Sum of area-normalised Lorentzians (FWHM ``width`` cm⁻¹) at ``frequencies`` on ``grid``.

    Imaginary (negative) frequencies are left out. ``intensities`` default to 1 (a density of
    states).
    """
    f = np.asarray(frequencies, np.float64)
    w = np.ones_like(f) if intensities is None else np.asarray(intensities, np.float64)
    keep = f > 0
    f, w = f[keep], w[keep]
    g = np.asarray(grid, np.float64)[:, None]
    gamma = 0.5 * float(width)
    return np.sum(w[None, :] * (gamma / np.pi) / ((g - f[None, :]) ** 2 + gamma**2), axis=1)


def ir_intensities(dipole_derivatives, result: VibrationResult, masses) -> np.ndarray:
    """IR intensities ``|∂μ/∂Q_k|²`` ((e·Å)²/(amu·Å²)) from dipole derivatives.

    Args:
        dipole_derivatives: ``[N, 3, 3]`` with ``[i, a, b] = ∂μ_b/∂x_{ia}`` (Born charges).
        result: from :func:`~tace_jax.vib.harmonic.harmonic_analysis`.
        masses: ``[N]`` amu.
    """
    z = np.asarray(dipole_derivatives, np.float64)
    n = z.shape[0]
    inv_sq = 1.0 / np.sqrt(np.repeat(np.asarray(masses, np.float64), 3))
    dq = result.mass_weighted_modes * inv_sq[None, :]  # [K, 3N] dx/dQ
    dmu = dq @ z.reshape(3 * n, 3)
    return np.sum(dmu**2, axis=1)


def plot_spectrum(
    result: VibrationResult,
    path,
    width: float = 10.0,
    intensities=None,
    fmax: float | None = None,
    title: str | None = None,
) -> pathlib.Path:
    """Write a PNG: stick spectrum plus Lorentzian-broadened density of states (or IR).

    Args:
        result: from :func:`~tace_jax.vib.harmonic.harmonic_analysis`.
        path: output PNG path.
        width: Lorentzian FWHM, cm⁻¹.
        intensities: per-mode intensities (default: a density of states, all 1).
        fmax: upper frequency (default 10 % above the highest mode).
        title: plot title.

    Returns:
        the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    f = np.asarray(result.frequencies)
    w = np.ones_like(f) if intensities is None else np.asarray(intensities, np.float64)
    top = fmax if fmax is not None else max(100.0, 1.1 * float(f.max(initial=0.0)) + 2 * width)
    grid = np.linspace(0.0, top, 2000)
    spec = lorentzian_spectrum(f, grid, width, w)
    fig = Figure(figsize=(7, 3.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    scale = spec.max() / max(float(w[f > 0].max(initial=1.0)), 1e-30) if spec.size else 1.0
    real = f > 0
    ax.vlines(f[real], 0, w[real] * scale, color="0.6", lw=1.0, label="modes")
    ax.plot(grid, spec, color="C0", lw=1.5, label=f"Lorentzian, FWHM {width:g} cm$^{{-1}}$")
    if result.num_imaginary:
        ax.text(
            0.01,
            0.95,
            f"{result.num_imaginary} imaginary mode(s) omitted",
            transform=ax.transAxes,
            va="top",
            color="C3",
        )
    ax.set_xlim(0, top)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("wavenumber [cm$^{-1}$]")
    ax.set_ylabel("IR intensity [arb.]" if intensities is not None else "DOS [1/cm$^{-1}$]")
    kind = "Γ-point phonons" if result.periodic else "vibrational spectrum"
    ax.set_title(title or f"{kind}, ZPE = {result.zpe:.4f} eV")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
