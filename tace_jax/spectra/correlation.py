"""Time autocorrelation functions, lag windows and their cosine transform (numpy).

The building blocks of the MD spectra (``docs/theory.md §3``, spectra utilities; TACE paper,
arXiv 2509.14961): a mean-removed autocorrelation ``C(τ_k)`` of a time series, summed over its
components, a one-sided lag window that tapers ``C`` to zero, zero padding, and the type-I
discrete cosine transform (DCT-I) that turns the even function ``C(τ)`` into a lineshape.

Conventions: a time series has shape ``[T, ...]`` (frames first, any trailing component axes);
``dt_fs`` is the time between frames in fs; wavenumbers are in cm⁻¹ (``ν̃ = f / c``).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

__all__ = [
    "CM_PER_INV_FS",
    "autocorrelation",
    "lag_window",
    "cosine_transform",
    "check_time_step",
]

#: ``ν̃`` (cm⁻¹) of a frequency of 1 fs⁻¹: ``1e15 / (c · 100)`` with c in m/s.
CM_PER_INV_FS = 1e15 / (299792458.0 * 100.0)

_WINDOWS = ("hann", "blackman", "gaussian", "none")


def check_time_step(dt_fs) -> float:
    """``dt_fs`` as a positive finite float, else ``ValueError`` naming ``dt_fs``."""
    try:
        dt = float(dt_fs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"dt_fs must be a positive number of fs, got {dt_fs!r}") from err
    if not np.isfinite(dt) or dt <= 0.0:
        raise ValueError(f"dt_fs must be a positive number of fs, got {dt_fs!r}")
    return dt


def autocorrelation(
    series,
    max_lag: int | None = None,
    remove_mean: bool = True,
    estimator: str = "unbiased",
    name: str = "series",
) -> np.ndarray:
    """Component-summed autocorrelation ``C(τ_k) = Σ_c ⟨x_c(t) x_c(t + τ_k)⟩_t``.

    Computed with FFTs (zero-padded to ``2T`` so there is no circular wrap-around).

    Args:
        series: ``[T]`` or ``[T, ...]``; trailing axes are components, summed over.
        max_lag: last lag ``k`` kept (frames); default ``T - 1``.
        remove_mean: subtract the time average of each component first.
        estimator: ``"unbiased"`` divides lag ``k`` by ``T - k`` (the number of pairs);
            ``"biased"`` divides every lag by ``T`` (an implicit triangular window).
        name: the argument name used in error messages.

    Returns:
        ``[max_lag + 1]`` float64, ``C[0]`` the (summed) variance.

    Raises:
        ValueError: fewer than 2 frames, non-finite values, a bad ``max_lag`` or estimator.
    """
    x = np.asarray(series, np.float64)
    if x.ndim < 1:
        raise ValueError(f"{name} must have a leading time axis [T, ...], got a scalar")
    t = x.shape[0]
    if t < 2:
        raise ValueError(f"{name} needs at least 2 frames (T >= 2), got T={t}")
    bad = ~np.isfinite(x.reshape(t, -1)).all(axis=1)
    if bad.any():
        raise ValueError(f"{name} has non-finite values at frame {int(np.argmax(bad))}")
    if max_lag is None:
        max_lag = t - 1
    if int(max_lag) != max_lag or not 1 <= max_lag <= t - 1:
        raise ValueError(f"max_lag must be an integer in [1, T-1] = [1, {t - 1}], got {max_lag}")
    max_lag = int(max_lag)
    if estimator not in ("unbiased", "biased"):
        raise ValueError(f"estimator must be 'unbiased' or 'biased', got {estimator!r}")
    x = x.reshape(t, -1)
    if remove_mean:
        x = x - x.mean(axis=0, keepdims=True)
    n_fft = scipy.fft.next_fast_len(2 * t)
    f = scipy.fft.rfft(x, n=n_fft, axis=0)
    c = scipy.fft.irfft((f * f.conj()).real.sum(axis=1), n=n_fft)[: max_lag + 1]
    norm = (t - np.arange(max_lag + 1)) if estimator == "unbiased" else np.full(max_lag + 1, t)
    return c / norm


def lag_window(num_lags: int, window="hann", width: float = 0.3) -> np.ndarray:
    """One-sided lag window ``w[k]``, ``k = 0 … num_lags-1``, with ``w[0] = 1``.

    Args:
        num_lags: number of lags ``N`` (≥ 2).
        window: ``"hann"`` ``cos²(πk / (2(N-1)))`` (the right half of a Hann window);
            ``"blackman"`` the right half of a Blackman window; ``"gaussian"``
            ``exp(-½ (k / (width·(N-1)))²)``; ``"none"``/``None`` all ones; or an array of
            ``N`` weights.
        width: Gaussian standard deviation as a fraction of the last lag.

    Returns:
        ``[N]`` float64.
    """
    n = int(num_lags)
    if window is None or (isinstance(window, str) and window == "none"):
        return np.ones(n)
    if not isinstance(window, str):
        w = np.asarray(window, np.float64)
        if w.shape != (n,):
            raise ValueError(f"window array must have shape ({n},) (one per lag), got {w.shape}")
        return w
    if window not in _WINDOWS:
        raise ValueError(f"window must be one of {_WINDOWS}, None or an array, got {window!r}")
    s = np.arange(n) / max(n - 1, 1)  # 0 … 1
    if window == "hann":
        return np.cos(0.5 * np.pi * s) ** 2
    if window == "blackman":
        return 0.42 + 0.5 * np.cos(np.pi * s) + 0.08 * np.cos(2 * np.pi * s)
    if not width > 0:
        raise ValueError(f"window_width must be > 0, got {width}")
    return np.exp(-0.5 * (s / width) ** 2)


def cosine_transform(corr, dt_fs: float, zero_padding: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lineshape ``S(ν̃) = dt · DCT-I[C]`` of an even correlation function given for ``τ ≥ 0``.

    ``DCT-I[C]_j = C_0 + (-1)^j C_{M-1} + 2 Σ_{k=1}^{M-2} C_k cos(π j k / (M-1))``, i.e. the
    trapezoidal ``∫_{-∞}^{∞} C(τ) cos(ωτ) dτ`` on the frequency grid
    ``f_j = j / (2 (M-1) dt)``.

    Args:
        corr: ``[N]`` (already windowed) correlation, lags ``0 … N-1``.
        dt_fs: lag spacing, fs.
        zero_padding: append ``zero_padding · N`` zeros first (``M = (1 + zero_padding) N``),
            interpolating the spectrum onto a grid ``1 + zero_padding`` times finer.

    Returns:
        ``(frequencies_cm [M], S [M])``; ``S`` in (unit of ``C``)·fs.
    """
    dt = check_time_step(dt_fs)
    if int(zero_padding) != zero_padding or zero_padding < 0:
        raise ValueError(f"zero_padding must be a non-negative integer, got {zero_padding!r}")
    c = np.asarray(corr, np.float64)
    c = np.concatenate([c, np.zeros(int(zero_padding) * len(c))])
    m = len(c)
    spec = dt * scipy.fft.dct(c, type=1)
    freqs = np.arange(m) / (2.0 * (m - 1) * dt) * CM_PER_INV_FS
    return freqs, spec
