"""MD spectra: IR from dipole and Raman from polarizability time series (analytic signals)."""

from __future__ import annotations

import numpy as np
import pytest

from tace_jax.spectra import (
    autocorrelation,
    cosine_transform,
    ir_from_dipoles,
    quantum_correction_factor,
    raman_from_polarizabilities,
)

C_CM_PER_S = 2.99792458e10  # speed of light, cm/s
H_SI, KB_SI = 6.62607015e-34, 1.380649e-23


def _times(t_frames, dt_fs):
    return np.arange(t_frames) * dt_fs


def _cos(nu_cm, t_fs, phase=0.0):
    """cos(2π f t) with f (1/fs) = ν̃ · c · 1e-15."""
    return np.cos(2 * np.pi * nu_cm * C_CM_PER_S * 1e-15 * t_fs + phase)


def _top_peaks(freqs, spec, count):
    """Positions of the ``count`` highest local maxima."""
    inner = np.flatnonzero((spec[1:-1] > spec[:-2]) & (spec[1:-1] >= spec[2:])) + 1
    best = inner[np.argsort(spec[inner])[::-1][:count]]
    return np.sort(freqs[best])


NU1, NU2 = 1000.0, 2500.0


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"window": "gaussian", "zero_padding": 3},
        {"window": None, "estimator": "biased"},
        {"window": "blackman", "zero_padding": 1, "max_lag": 1500},
        {"quantum_correction": "harmonic", "temperature": 300.0},
    ],
)
def test_ir_two_mode_signal_peaks_at_its_frequencies(options):
    dt, nt = 0.5, 4000
    t = _times(nt, dt)
    rng = np.random.default_rng(0)
    mu = np.stack(
        [
            0.8 * _cos(NU1, t) + 0.3 * _cos(NU2, t, 0.4),
            0.5 * _cos(NU2, t, 1.3),
            0.2 * _cos(NU1, t, 2.0),
        ],
        axis=1,
    )
    mu = mu + np.array([3.0, -1.0, 0.5]) + 1e-3 * rng.normal(size=mu.shape)  # offset + noise
    freqs, inten = ir_from_dipoles(mu, dt, **options)
    assert freqs.shape == inten.shape and freqs.ndim == 1
    assert freqs[0] == 0.0
    bin_cm = freqs[1] - freqs[0]
    peaks = _top_peaks(freqs, inten, 2)
    np.testing.assert_allclose(peaks, [NU1, NU2], atol=bin_cm)
    # the grid is j / (2 (M-1) dt) in cm^-1
    m = len(freqs)
    assert bin_cm == pytest.approx(1e15 / (2 * (m - 1) * dt * C_CM_PER_S), rel=1e-12)


def test_ir_bin_width_and_cropping():
    dt, nt = 1.0, 1000
    mu = np.stack([_cos(NU1, _times(nt, dt))] * 3, axis=1)
    f1, _ = ir_from_dipoles(mu, dt)
    f4, _ = ir_from_dipoles(mu, dt, zero_padding=3)
    assert len(f4) == 4 * len(f1)
    assert (f1[1] - f1[0]) / (f4[1] - f4[0]) == pytest.approx((4 * nt - 1) / (nt - 1))
    fc, ic = ir_from_dipoles(mu, dt, max_frequency_cm=3000.0, normalize=True)
    assert fc.max() <= 3000.0 and ic.max() == pytest.approx(1.0)


def test_raman_anisotropic_and_isotropic_parts_separate():
    dt, nt = 0.5, 4000
    t = _times(nt, dt)
    nu_iso, nu_aniso = 1600.0, 700.0
    b = np.array([[1.0, 0.3, 0.0], [0.3, -0.4, 0.2], [0.0, 0.2, -0.6]])  # traceless symmetric
    alpha = (
        (2.0 + 0.1 * _cos(nu_iso, t))[:, None, None] * np.eye(3)
        + 0.05 * _cos(nu_aniso, t)[:, None, None] * b
        + np.diag([0.3, 0.1, -0.2])  # static anisotropy (removed with the mean)
    )
    fa, ia = raman_from_polarizabilities(alpha, dt, kind="anisotropic")
    fi, ii = raman_from_polarizabilities(alpha, dt, kind="isotropic")
    bin_cm = fa[1] - fa[0]
    assert abs(_top_peaks(fa, ia, 1)[0] - nu_aniso) <= bin_cm
    assert abs(_top_peaks(fi, ii, 1)[0] - nu_iso) <= bin_cm
    # each part carries (up to window leakage) nothing at the other's frequency
    j_iso, j_an = np.argmin(abs(fa - nu_iso)), np.argmin(abs(fa - nu_aniso))
    assert abs(ia[j_iso]) < 1e-3 * ia.max()
    assert abs(ii[j_an]) < 1e-3 * ii.max()
    fb, both = raman_from_polarizabilities(alpha, dt, kind="both")
    assert both.shape == (len(fb), 2)
    np.testing.assert_allclose(fb, fa)
    np.testing.assert_allclose(both[:, 0], ia)
    np.testing.assert_allclose(both[:, 1], ii)


def test_autocorrelation_matches_direct_sums():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(37, 2, 3))
    flat = (x - x.mean(0)).reshape(37, -1)
    direct = np.array([np.sum(flat[: 37 - k] * flat[k:]) for k in range(37)])
    np.testing.assert_allclose(autocorrelation(x), direct / (37 - np.arange(37)), atol=1e-12)
    np.testing.assert_allclose(autocorrelation(x, estimator="biased"), direct / 37, atol=1e-12)
    raw = x.reshape(37, -1)
    direct_raw = np.array([np.sum(raw[: 37 - k] * raw[k:]) for k in range(10)])
    got = autocorrelation(x, max_lag=9, remove_mean=False, estimator="biased")
    np.testing.assert_allclose(got, direct_raw / 37, atol=1e-12)


def test_cosine_transform_is_dct_one():
    rng = np.random.default_rng(2)
    c = rng.normal(size=9)
    dt = 0.7
    freqs, spec = cosine_transform(c, dt)
    n = len(c)
    k = np.arange(n)
    expect = [
        dt
        * (c[0] + (-1) ** j * c[-1] + 2 * np.sum(c[1:-1] * np.cos(np.pi * j * k[1:-1] / (n - 1))))
        for j in range(n)
    ]
    np.testing.assert_allclose(spec, expect, atol=1e-12)
    np.testing.assert_allclose(freqs, k / (2 * (n - 1) * dt) * 1e15 / C_CM_PER_S)


def test_quantum_correction_factors():
    nu = np.array([0.0, 100.0, 1000.0, 3000.0])
    temp = 250.0
    x = H_SI * C_CM_PER_S * nu / (KB_SI * temp)
    with np.errstate(divide="ignore", invalid="ignore"):
        harm = np.where(x > 0, x / (1 - np.exp(-x)), 1.0)
    np.testing.assert_allclose(quantum_correction_factor(nu, "harmonic", temp), harm, rtol=1e-5)
    np.testing.assert_allclose(
        quantum_correction_factor(nu, "standard", temp), 2 / (1 + np.exp(-x)), rtol=1e-5
    )
    np.testing.assert_allclose(
        quantum_correction_factor(nu, "schofield", temp), np.exp(x / 2), rtol=1e-5
    )
    # applied as a multiplicative factor on the classical spectrum
    t = _times(2000, 0.5)
    mu = np.stack([_cos(NU1, t), _cos(NU2, t), 0 * t], axis=1)
    f, plain = ir_from_dipoles(mu, 0.5)
    _, corr = ir_from_dipoles(mu, 0.5, quantum_correction="harmonic", temperature=temp)
    np.testing.assert_allclose(corr, plain * quantum_correction_factor(f, "harmonic", temp))


GOOD_MU = np.zeros((10, 3)) + np.arange(10)[:, None]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: ir_from_dipoles(np.zeros((10, 2)), 1.0), r"dipoles must have shape \[T, 3\]"),
        (lambda: ir_from_dipoles(np.zeros(10), 1.0), "dipoles must have shape"),
        (lambda: ir_from_dipoles(np.zeros((10, 3, 1)), 1.0), "dipoles must have shape"),
        (lambda: ir_from_dipoles(np.zeros((1, 3)), 1.0), r"dipoles needs at least 2 frames"),
        (lambda: ir_from_dipoles(GOOD_MU, 0.0), "dt_fs must be a positive"),
        (lambda: ir_from_dipoles(GOOD_MU, -1.0), "dt_fs must be a positive"),
        (lambda: ir_from_dipoles(GOOD_MU, float("nan")), "dt_fs must be a positive"),
        (lambda: ir_from_dipoles(GOOD_MU, "x"), "dt_fs must be a positive"),
        (lambda: ir_from_dipoles(GOOD_MU, 1.0, max_lag=10), "max_lag"),
        (lambda: ir_from_dipoles(GOOD_MU, 1.0, window="cosine"), "window"),
        (lambda: ir_from_dipoles(GOOD_MU, 1.0, window=np.ones(3)), "window array"),
        (lambda: ir_from_dipoles(GOOD_MU, 1.0, zero_padding=-1), "zero_padding"),
        (lambda: ir_from_dipoles(GOOD_MU, 1.0, estimator="x"), "estimator"),
        (lambda: ir_from_dipoles(GOOD_MU, 1.0, quantum_correction="harmonic"), "temperature"),
        (lambda: ir_from_dipoles(GOOD_MU, 1.0, quantum_correction="qq"), "quantum_correction"),
        (lambda: ir_from_dipoles(GOOD_MU, 1.0, prefactor="omega"), "prefactor"),
        (lambda: ir_from_dipoles(GOOD_MU * np.nan, 1.0), "dipoles has non-finite values"),
        (lambda: raman_from_polarizabilities(np.zeros((10, 3)), 1.0), r"alphas .*\[T, 3, 3\]"),
        (lambda: raman_from_polarizabilities(np.zeros((1, 3, 3)), 1.0), "alphas needs at least"),
        (lambda: raman_from_polarizabilities(np.zeros((5, 3, 3)), 0), "dt_fs"),
        (lambda: raman_from_polarizabilities(np.zeros((5, 3, 3)), 1.0, kind="vv"), "kind"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
