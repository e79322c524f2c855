"""User feature plug-ins: loaded from a file, stored per channel, clear errors naming file and function."""
import numpy as np
import pytest
import xarray as xr

from cryopipe.features.dataset import features_dataset
from cryopipe.features.plugins import PluginError, file_hash, load_plugins
from cryopipe.io.stores import provenance

FS = 25_000.0


def records(n_events=7, n=256):
    rng = np.random.default_rng(0)
    trace = rng.normal(0, 1e-3, (2, n_events, n)).astype(np.float32)
    return xr.Dataset({"trace": (("channel", "event", "sample"), trace)},
                      coords={"channel": ["a", "b"], "event": np.arange(n_events)},
                      attrs=provenance("records", parameters={}, inputs=[], sample_frequency=FS, record_length=n))


def write(tmp_path, text, name="my_features.py"):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = '''
import numpy as np
from numpy import mean  # imported: not a feature

UNITS = {"peak_to_peak": "V"}


def peak_to_peak(trace, sample_frequency):
    assert trace.dtype == np.float32 and trace.ndim == 2
    return trace.max(axis=1) - trace.min(axis=1)


def duration(trace, sample_frequency):
    return np.full(trace.shape[0], trace.shape[1] / sample_frequency)


def _helper(x):
    return x
'''


def test_plugin_features_are_stored_per_channel(tmp_path):
    path = write(tmp_path, GOOD)
    fams = load_plugins([path])
    assert [list(f.units) for f in fams] == [["peak_to_peak"], ["duration"]]
    rec = records()
    ds = features_dataset(rec, plugins=fams)
    tr = rec.trace.values
    np.testing.assert_array_equal(ds["peak_to_peak"].values, tr.max(axis=2) - tr.min(axis=2))
    assert ds["peak_to_peak"].dims == ("channel", "event") and ds["peak_to_peak"].attrs["units"] == "V"
    assert ds["duration"].attrs["units"] == "unknown"
    np.testing.assert_allclose(ds["duration"].values, 256 / FS)
    assert "mean" in ds and ds["mean"].attrs["units"] == "V"     # the built-in, not numpy's mean


def test_file_hash_changes_with_content(tmp_path):
    path = write(tmp_path, GOOD)
    h = file_hash(path)
    path.write_text(GOOD + "\n# edited\n")
    assert file_hash(path) != h


@pytest.mark.parametrize("body, match", [
    ("def f(trace, sample_frequency):\n    raise ValueError('boom')\n", r"my_features.py, function f: raised ValueError: boom"),
    ("def f(trace, sample_frequency):\n    return trace\n", r"my_features.py, function f: returned shape \(7, 256\), expected \(7,\)"),
    ("def f(trace, sample_frequency):\n    return 'x'\n", r"my_features.py, function f: returned"),
])
def test_bad_plugin_output_names_file_and_function(tmp_path, body, match):
    fams = load_plugins([write(tmp_path, body)])
    with pytest.raises(PluginError, match=match):
        features_dataset(records(), plugins=fams)


@pytest.mark.parametrize("body, match", [
    ("def pulse_height(trace, sample_frequency):\n    return trace[:, 0]\n",
     r"my_features.py, function pulse_height: 'pulse_height' is a built-in feature"),
    ("def of_snr(trace, sample_frequency):\n    return trace[:, 0]\n", r"function of_snr: 'of_snr' is a built-in"),
    ("def f(trace):\n    return trace[:, 0]\n", r"function f: must take \(trace, sample_frequency\)"),
    ("import nonexistent_module_xyz\n", r"my_features.py: importing the file raised ModuleNotFoundError"),
    ("X = 1\n", r"my_features.py: defines no public function"),
])
def test_bad_plugin_file_names_file_and_function(tmp_path, body, match):
    with pytest.raises(PluginError, match=match):
        load_plugins([write(tmp_path, body)])


def test_same_name_in_two_plugin_files(tmp_path):
    a = write(tmp_path, "def f(trace, sample_frequency):\n    return trace[:, 0]\n", "a.py")
    b = write(tmp_path, "def f(trace, sample_frequency):\n    return trace[:, 1]\n", "b.py")
    with pytest.raises(PluginError, match=r"b.py, function f: 'f' is already defined by the plug-in .*a.py"):
        load_plugins([a, b])
    with pytest.raises(PluginError, match="no such file"):
        load_plugins([tmp_path / "missing.py"])


MUTATING = '''
def scaled(trace, sample_frequency):
    trace *= 1000
    return trace.max(axis=1)
'''

COPYING = '''
def scaled(trace, sample_frequency):
    t = trace.copy()
    t *= 1000
    return t.max(axis=1)
'''


def test_plugin_cannot_modify_the_traces_of_the_builtin_features(tmp_path):
    """`trace *= 1000` in a plug-in: a clear error naming the plug-in, never a silently scaled feature."""
    from test_features_families import make_records
    rec, char = make_records(n_events=12)
    before = rec.trace.values.copy()
    ref = features_dataset(rec, characterization=char)
    with pytest.raises(PluginError, match=r"mutate\.py, function scaled: tried to modify the trace.*read-only"):
        features_dataset(rec, characterization=char, plugins=load_plugins([write(tmp_path, MUTATING, "mutate.py")]))
    np.testing.assert_array_equal(rec.trace.values, before)
    ds = features_dataset(rec, characterization=char, plugins=load_plugins([write(tmp_path, COPYING, "copy.py")]))
    np.testing.assert_allclose(ds["scaled"].values, 1000 * before.max(axis=2).astype(np.float64), rtol=1e-6)
    for name in ("of_amplitude", "mean"):  # the OF runs after the plug-ins on the same block
        np.testing.assert_array_equal(ds[name].values, ref[name].values)
