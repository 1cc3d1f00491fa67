"""Infrared and Raman spectra from MD time series of dipoles and polarizabilities.

``docs/theory.md §3`` (spectra utilities; TACE paper, arXiv 2509.14961):

* IR ∝ ω² · DCT-I of the dipole autocorrelation ``Σ_a ⟨μ_a(0) μ_a(t)⟩``;
* anisotropic Raman ∝ ω² · DCT-I of the autocorrelation ``Σ_ab ⟨β_ab(0) β_ab(t)⟩`` of the
  traceless part ``β = α − (tr α / 3) I``;
* isotropic Raman ∝ ω² · DCT-I of the autocorrelation of ``a = tr α / 3``.

Every spectrum is computed as

    ``I(ν̃) = ν̃² · Q(ν̃) · S(ν̃)``,  ``S(ν̃) = dt · DCT-I[w · C](ν̃)``

where ``C`` is the mean-removed autocorrelation
(:func:`~tace_jax.spectra.correlation.autocorrelation`), ``w`` a lag window, the windowed
``C`` optionally zero-padded, and ``Q`` an optional quantum correction factor
(:mod:`tace_jax.spectra.quantum`). ``ν̃`` is the wavenumber in cm⁻¹, so the intensities are in
(input unit)²·fs·cm⁻² — arbitrary units; pass ``normalize=True`` to scale the maximum to 1.
The frames must be equally spaced by ``dt_fs`` (the recording interval, i.e. the MD time step
times the recording stride).
"""

from __future__ import annotations

import numpy as np

from .correlation import autocorrelation, check_time_step, cosine_transform, lag_window
from .quantum import quantum_correction_factor

__all__ = ["ir_from_dipoles", "raman_from_polarizabilities", "correlation_spectrum"]

_RAMAN_KINDS = ("anisotropic", "isotropic", "both")


def correlation_spectrum(
    series,
    dt_fs,
    *,
    window="hann",
    window_width: float = 0.3,
    zero_padding: int = 0,
    max_lag: int | None = None,
    remove_mean: bool = True,
    estimator: str = "unbiased",
    quantum_correction: str | None = None,
    temperature: float | None = None,
    prefactor: str | None = "omega2",
    max_frequency_cm: float | None = None,
    normalize: bool = False,
    name: str = "series",
) -> tuple[np.ndarray, np.ndarray]:
    """``I(ν̃) = ν̃^p · Q(ν̃) · dt · DCT-I[w · C]`` of a ``[T, ...]`` series (module docstring).

    Args:
        series: ``[T]`` or ``[T, ...]`` equally spaced frames (components summed in ``C``).
        dt_fs: time between frames, fs (> 0).
        window: lag window: ``"hann"`` (default), ``"blackman"``, ``"gaussian"``, ``None``
            or an array of ``max_lag + 1`` weights
            (:func:`~tace_jax.spectra.correlation.lag_window`).
        window_width: Gaussian window standard deviation, as a fraction of ``max_lag``.
        zero_padding: append ``zero_padding × (max_lag + 1)`` zeros to the windowed ``C``
            (a ``1 + zero_padding`` times finer frequency grid).
        max_lag: longest lag, frames (default ``T - 1``).
        remove_mean: subtract each component's time average.
        estimator: ``"unbiased"`` (divide lag k by ``T - k``) or ``"biased"`` (by ``T``).
        quantum_correction: ``None``, ``"harmonic"``, ``"standard"`` or ``"schofield"``.
        temperature: K; required by a quantum correction.
        prefactor: ``"omega2"`` (``p = 2``, the IR/Raman form of §3) or ``None`` (``p = 0``,
            the bare lineshape).
        max_frequency_cm: drop the grid above this wavenumber.
        normalize: scale the intensities so that their maximum is 1.
        name: the argument name used in error messages.

    Returns:
        ``(frequencies_cm [F], intensities [F])`` numpy float64.
    """
    dt = check_time_step(dt_fs)
    corr = autocorrelation(series, max_lag, remove_mean, estimator, name=name)
    corr = corr * lag_window(len(corr), window, window_width)
    freqs, spec = cosine_transform(corr, dt, zero_padding)
    if prefactor == "omega2":
        spec = spec * freqs**2
    elif prefactor is not None:
        raise ValueError(f"prefactor must be 'omega2' or None, got {prefactor!r}")
    spec = spec * quantum_correction_factor(freqs, quantum_correction, temperature)
    return _finish(freqs, spec, max_frequency_cm, normalize)


def _finish(freqs, spec, max_frequency_cm, normalize):
    if max_frequency_cm is not None:
        if not max_frequency_cm > 0:
            raise ValueError(f"max_frequency_cm must be > 0, got {max_frequency_cm!r}")
        keep = freqs <= max_frequency_cm
        freqs, spec = freqs[keep], spec[keep]
    if normalize:
        top = np.max(np.abs(spec), axis=0, keepdims=True)
        spec = spec / np.where(top > 0, top, 1.0)
    return freqs, spec


def _check_series(x, name: str, tail: tuple[int, ...], layout: str) -> np.ndarray:
    a = np.asarray(x, np.float64)
    if a.ndim != 1 + len(tail) or a.shape[1:] != tail:
        raise ValueError(f"{name} must have shape {layout}, got {a.shape}")
    if a.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 frames (T >= 2), got T={a.shape[0]}")
    return a


def ir_from_dipoles(dipoles, dt_fs, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """IR spectrum ``ν̃² · Q · DCT-I`` of the dipole autocorrelation ``Σ_a ⟨μ_a(0) μ_a(t)⟩``.

    Args:
        dipoles: ``[T, 3]`` total dipole (molecules) or polarization (cells), e.g. e·Å,
            one row per recorded frame.
        dt_fs: time between frames, fs (> 0).
        **kwargs: ``window``, ``window_width``, ``zero_padding``, ``max_lag``,
            ``remove_mean``, ``estimator``, ``quantum_correction``, ``temperature``,
            ``prefactor``, ``max_frequency_cm``, ``normalize`` as in
            :func:`correlation_spectrum`.

    Returns:
        ``(frequencies_cm [F], intensities [F])``: wavenumbers (cm⁻¹) from 0 in steps of
        ``1 / (2 (M-1) dt c)`` (``M`` the padded number of lags) and intensities in
        (dipole unit)²·fs·cm⁻² (arbitrary units).

    Raises:
        ValueError: ``dipoles`` not ``[T, 3]``, ``T < 2``, ``dt_fs <= 0`` or a bad option.
    """
    mu = _check_series(dipoles, "dipoles", (3,), "[T, 3]")
    return correlation_spectrum(mu, dt_fs, name="dipoles", **kwargs)


def raman_from_polarizabilities(
    alphas, dt_fs, kind: str = "anisotropic", **kwargs
) -> tuple[np.ndarray, np.ndarray]:
    """Raman spectra from the polarizability autocorrelation (module docstring).

    Args:
        alphas: ``[T, 3, 3]`` polarizability tensors per frame (e.g. e·Å²/V or Å³).
        dt_fs: time between frames, fs (> 0).
        kind: ``"anisotropic"`` (traceless part ``α − (tr α/3) I``), ``"isotropic"``
            (``tr α / 3``) or ``"both"``.
        **kwargs: as in :func:`correlation_spectrum` (``normalize`` scales each column
            separately).

    Returns:
        ``(frequencies_cm [F], intensities)``: ``intensities`` is ``[F]`` for one kind and
        ``[F, 2]`` with columns ``(anisotropic, isotropic)`` for ``kind="both"``; units
        (α unit)²·fs·cm⁻².

    Raises:
        ValueError: ``alphas`` not ``[T, 3, 3]``, ``T < 2``, ``dt_fs <= 0``, unknown ``kind``.
    """
    a = _check_series(alphas, "alphas", (3, 3), "[T, 3, 3]")
    if kind not in _RAMAN_KINDS:
        raise ValueError(f"kind must be one of {_RAMAN_KINDS}, got {kind!r}")
    iso = np.trace(a, axis1=1, axis2=2) / 3.0
    out = {}
    if kind in ("anisotropic", "both"):
        aniso = a - iso[:, None, None] * np.eye(3)
        out["anisotropic"] = correlation_spectrum(aniso, dt_fs, name="alphas", **kwargs)
    if kind in ("isotropic", "both"):
        out["isotropic"] = correlation_spectrum(iso, dt_fs, name="alphas", **kwargs)
    if kind != "both":
        return out[kind]
    freqs = out["anisotropic"][0]
    return freqs, np.stack([out["anisotropic"][1], out["isotropic"][1]], axis=1)
