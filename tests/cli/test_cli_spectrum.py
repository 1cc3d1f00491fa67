"""``tace-jax spectrum`` end to end (issue 10, Build 4): CSV/JSON/PNG/series outputs equal the
library functions, progress bars, and bad inputs exit with code 2 and a clear message.

The model is a tiny TACE field model (``electric_field`` embedding) saved as ``.tace``, plus the
reference fixture ``tests/fixtures/tace_field_dev.npz`` (which also needs per-atom ``charges``).
"""

from __future__ import annotations

import csv
import json
import pathlib

import ase
import ase.io
import jax
import numpy as np
import pytest

from tace_jax.cli.spectrum import main
from tace_jax.inference import Potential
from tace_jax.models import Statistics, TACEConfig

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
MAX_CM = 4500.0  # the CLI's default --max-frequency


def _tiny(field: bool) -> Potential:
    cfg = TACEConfig(
        atomic_numbers=(1, 8),
        cutoff=3.0,
        num_layers=1,
        correlation=2,
        num_channel=8,
        lmax_node=1,
        lmax_edge=1,
        radial_hidden=(8,),
        zbl=False,
        targets=("energy",),
        equivariant_embeddings=("electric_field",) if field else (),
    )
    return Potential.init(cfg, Statistics.default(2), jax.random.key(3), dtype="float64")


def _water() -> ase.Atoms:
    return ase.Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0.0]])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """``(field model path, plain model path, water.xyz path, field Potential)``."""
    d = tmp_path_factory.mktemp("spectrum")
    pot = _tiny(True)
    pot.save(d / "field.tace")
    _tiny(False).save(d / "plain.tace")
    ase.io.write(d / "water.xyz", _water())
    return d / "field.tace", d / "plain.tace", d / "water.xyz", pot


def _read_csv(path) -> dict:
    out: dict = {}
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["method", "spectrum", "frequencies_cm", "intensities"]
    for method, name, f, i in rows[1:]:
        out.setdefault((method, name), []).append((float(f), float(i)))
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.slow  # compiles the MD chunk and P: ~15 s of CPU
def test_md_ir_csv_json_and_series_equal_the_library(files, tmp_path, capsys):
    from tace_jax.spectra import ir_from_dipoles

    model, _, water, _ = files
    out = tmp_path / "out"
    argv = [str(model), str(water), "--method", "md", "--ir", "--steps", "12",
            "--record-every", "2", "--temperature", "100", "--csv", str(out / "s.csv"),
            "--json", str(out / "s.json"), "--series", str(out / "series.npz")]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "MD nve" in err and "response" in err  # tqdm bars: MD and the batched evaluation
    series = np.load(out / "series.npz")
    assert series["dipole"].shape == (7, 3) and list(series["steps"]) == [0, 2, 4, 6, 8, 10, 12]
    assert float(series["dt_fs"]) == pytest.approx(2 * 0.5)
    assert np.ptp(series["dipole"], axis=0).max() > 0
    f, i = ir_from_dipoles(series["dipole"], float(series["dt_fs"]), max_frequency_cm=MAX_CM)
    got = _read_csv(out / "s.csv")
    assert list(got) == [("md", "ir")]
    np.testing.assert_allclose(got[("md", "ir")][:, 0], f, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got[("md", "ir")][:, 1], i, rtol=1e-6, atol=1e-12 * abs(i).max())
    summary = json.loads((out / "s.json").read_text())
    assert summary["method"] == "md" and summary["csv"] == str(out / "s.csv")
    assert set(summary["peaks_cm"]) == {"md_ir"}
    assert summary["settings"]["steps"] == 12 and summary["settings"]["record_every"] == 2


@pytest.mark.slow
def test_both_methods_ir_raman_csv_png_json_equal_the_library(files, tmp_path, capsys):
    """Relaxed water, ``--method both --ir --raman``: every CSV block equals the library call
    (the MD one by re-running the same seeded NVE in process)."""
    from ase.optimize import BFGS

    from tace_jax.calculator import TACECalculator
    from tace_jax.md.recording import ResponseRecorder
    from tace_jax.md.run import run_md
    from tace_jax.spectra import (
        harmonic_ir,
        harmonic_raman,
        ir_from_dipoles,
        raman_from_polarizabilities,
    )

    model, _, _, pot = files
    atoms = _water()
    atoms.calc = TACECalculator(pot)
    BFGS(atoms, logfile=None).run(fmax=1e-5, steps=500)
    atoms.calc = None
    ase.io.write(tmp_path / "relaxed.xyz", atoms)
    out = tmp_path / "out"
    argv = [str(model), str(tmp_path / "relaxed.xyz"), "--method", "both", "--ir", "--raman",
            "--steps", "40", "--record-every", "2", "--temperature", "20", "--seed", "4",
            "--batch-size", "8", "--csv", str(out / "s.csv"), "--png", str(out / "s.png"),
            "--json", str(out / "s.json")]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "MD nve" in printed.err and "response" in printed.err
    assert "harmonic ir" in printed.out and "md raman" in printed.out
    got = _read_csv(out / "s.csv")
    assert set(got) == {("md", "ir"), ("md", "raman"), ("harmonic", "ir"), ("harmonic", "raman")}

    field = {"electric_field": np.zeros(3)}
    atoms = ase.io.read(tmp_path / "relaxed.xyz")
    kw = dict(electric_field=np.zeros(3), broadening_cm=10.0, grid_max_cm=MAX_CM)
    expect = {
        ("harmonic", "ir"): harmonic_ir(pot, atoms, **kw),
        ("harmonic", "raman"): harmonic_raman(pot, atoms, **kw),
    }
    rec = ResponseRecorder(pot, ("dipole", "polarizability"), every=2, inputs=field)
    run_md(pot, atoms, 40, ensemble="nve", temperature=20.0, timestep=0.5, seed=4,
           log_interval=2, inputs=field, recorder=rec)  # fmt: skip
    series = rec.compute()
    expect[("md", "ir")] = ir_from_dipoles(series["dipole"], rec.dt_fs, max_frequency_cm=MAX_CM)
    expect[("md", "raman")] = raman_from_polarizabilities(
        series["polarizability"], rec.dt_fs, max_frequency_cm=MAX_CM
    )
    for key, (f, i) in expect.items():
        assert np.abs(i).max() > 0, key
        np.testing.assert_allclose(got[key][:, 0], f, rtol=1e-6, atol=1e-9, err_msg=str(key))
        np.testing.assert_allclose(
            got[key][:, 1], i, rtol=1e-5, atol=1e-9 * abs(i).max(), err_msg=str(key)
        )
    # three real modes of water, broadened: the harmonic IR peaks are near the mode wavenumbers
    modes, _ = harmonic_ir(pot, atoms, stick=True)
    summary = json.loads((out / "s.json").read_text())
    peaks = summary["peaks_cm"]["harmonic_ir"]
    assert len(peaks) == 3
    np.testing.assert_allclose(peaks, np.sort(modes[modes > 0]), atol=1.0)
    png = (out / "s.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--record-every", "0"], "--record-every must be >= 1"),
        (["--steps", "3", "--record-every", "2"], "--steps must be >= 2"),
        (["--method", "harmonic", "--model-kind", "plain"], "needs a field model"),
        (["--electric-field", "0", "0", "0.1", "--model-kind", "plain"], "no electric_field"),
        (["--structure-kind", "missing"], "missing.xyz: cannot read frame"),
        (["--model-kind", "missing"], "does not exist"),
        (["--index", "5"], "cannot read frame 5"),
    ],
)
def test_bad_input_exits_2_with_a_message(files, tmp_path, capsys, extra, match):
    model, plain, water, _ = files
    if "--model-kind" in extra:
        kind = extra[extra.index("--model-kind") + 1]
        model = plain if kind == "plain" else tmp_path / "missing.tace"
        extra = [e for e in extra if e not in ("--model-kind", kind)]
    if "--structure-kind" in extra:
        water = tmp_path / "missing.xyz"
        extra = extra[2:]
    assert main([str(model), str(water), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tace-jax spectrum: error:") and match in err, err


def test_reference_fixture_model_needs_charges_in_the_structure(tmp_path, capsys):
    """The fixture ``.npz`` loads as MODEL; its ``charges`` input must come from the file."""
    ase.io.write(tmp_path / "co.xyz", ase.Atoms("CO", positions=[[0, 0, 0], [1.13, 0, 0]]))
    model = FIXTURES / "tace_field_dev.npz"
    assert main([str(model), str(tmp_path / "co.xyz"), "--no-progress"]) == 2
    assert "'charges'" in capsys.readouterr().err


def test_unknown_method_is_an_argparse_error(files, capsys):
    model, _, water, _ = files
    with pytest.raises(SystemExit) as exc:
        main([str(model), str(water), "--method", "quantum"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
