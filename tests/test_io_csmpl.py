"""csmpl I/O: round trips, chunked reading, and every bad input named in the backbone issue."""
import numpy as np
import pytest

from cryopipe.errors import InputError
from cryopipe.io.csmpl import open_csmpl, volts_per_adc, write_csmpl


def _write(path, volts):
    write_csmpl(path, volts)
    return path


def test_round_trip_volts_within_half_an_adc_count(tmp_path):
    rng = np.random.default_rng(1)
    volts = rng.uniform(-9, 9, 5000)
    p = _write(tmp_path / "a.csmpl", volts)
    s = open_csmpl([p], 25000, 1000)
    back = s.read(0, 5000)[0]
    assert s.n_samples == 5000 and s.duration == pytest.approx(0.2)
    assert np.max(np.abs(back - volts)) <= volts_per_adc() / 2 + 1e-6


def test_adc_conversion_is_20_volts_over_16_bits(tmp_path):
    p = tmp_path / "c.csmpl"
    np.array([1, -2, 32767], dtype="<i2").tofile(p)
    s = open_csmpl([p], 1000, 2)
    np.testing.assert_allclose(s.read(0, 3)[0], np.array([1, -2, 32767]) * 20 / 2**16, rtol=1e-6)


def test_custom_adc_bits_and_range(tmp_path):
    p = tmp_path / "c.csmpl"
    np.array([100], dtype="<i2").tofile(p)
    s = open_csmpl([p], 1000, 1, adc_bits=12, adc_range=4.0)
    assert s.read(0, 1)[0, 0] == pytest.approx(100 * 4.0 / 2**12)


def test_chunks_with_overlap_cover_stream_exactly_once(tmp_path):
    x = np.arange(1000) * volts_per_adc()
    p = _write(tmp_path / "a.csmpl", x)
    s = open_csmpl([p], 100, 10)
    owned = []
    for a, b, v in s.iter_chunks(300, before=7, after=11):
        assert v.shape == (1, b - a + 18)
        np.testing.assert_allclose(v[0, 7 : 7 + b - a], x[a:b], atol=1e-6)
        owned.append((a, b))
    assert owned[0][0] == 0 and owned[-1][1] == 1000
    assert all(b0 == a1 for (_, b0), (a1, _) in zip(owned, owned[1:]))


def test_edges_are_padded_with_edge_values(tmp_path):
    p = _write(tmp_path / "a.csmpl", np.array([1.0, 2.0, 3.0]))
    v = open_csmpl([p], 100, 1).read(-2, 5)[0]
    np.testing.assert_allclose(v, np.array([1, 1, 1, 2, 3, 3, 3]) * 1.0, atol=volts_per_adc())


def test_multichannel_lockstep_and_records(tmp_path):
    a = _write(tmp_path / "a.csmpl", np.linspace(-1, 1, 4000))
    b = _write(tmp_path / "b.csmpl", np.linspace(1, -1, 4000))
    s = open_csmpl([a, b], 1000, 100)
    starts = np.array([0, 50, 3900])
    (sl, recs), = list(s.read_records(starts, 100))
    assert recs.shape == (2, 3, 100)
    np.testing.assert_allclose(recs[:, 1], s.read(50, 150), atol=1e-7)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.csmpl", "not found"),
        (lambda d: (d / "odd.csmpl").write_bytes(b"\x00\x01\x02") and d / "odd.csmpl", "odd byte count"),
        (lambda d: (d / "empty.csmpl").write_bytes(b"") or d / "empty.csmpl", "empty"),
        (lambda d: (d / "short.csmpl").write_bytes(b"\x00" * 20) and d / "short.csmpl", "shorter than one record"),
    ],
)
def test_bad_files_name_the_file_and_problem(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(InputError) as err:
        open_csmpl([path], 25000, 16)
    assert str(path) in str(err.value) and message in str(err.value)


def test_unequal_channel_lengths(tmp_path):
    a = _write(tmp_path / "a.csmpl", np.zeros(100))
    b = _write(tmp_path / "b.csmpl", np.zeros(120))
    with pytest.raises(InputError, match="unequal length"):
        open_csmpl([a, b], 1000, 10)


@pytest.mark.parametrize("fs, n", [(0, 10), (-5, 10), (1000, 0), (1000, -3)])
def test_non_positive_frequency_or_length(tmp_path, fs, n):
    a = _write(tmp_path / "a.csmpl", np.zeros(100))
    with pytest.raises(InputError, match="must be positive"):
        open_csmpl([a], fs, n)
