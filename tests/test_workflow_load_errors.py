"""Problems with the user's files that Snakemake would not look at (inputs and params of jobs it need
not run) are found when the workflow loads: one line, exit 1, no traceback frames."""
import pytest

from workflow_util import snakemake, tiny_config, write_config

pytestmark = pytest.mark.slow   # runs Snakemake (dry runs: a few seconds each)


def one_line_failure(proc, *words):
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("Using workflow specific")]
    assert len(lines) == 1, proc.stderr
    assert 'File "' not in proc.stderr and "Traceback" not in proc.stderr
    assert "InputFunctionException" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_missing_plugin_file_fails_whatever_the_targets(tmp_path):
    """An up-to-date run never looks at the features job's inputs: the missing plug-in must be found at
    load time (here with a target that does not need the features at all)."""
    cfg = tiny_config(tmp_path / "results")
    cfg.setdefault("features", {})["plugins"] = [str(tmp_path / "gone.py")]
    proc = snakemake(tmp_path, write_config(tmp_path / "c.yaml", cfg), str(tmp_path / "results/sim/stream"),
                     "-n", check=False)
    one_line_failure(proc, "gone.py", "features.plugins", "no such file", "run sim")


@pytest.mark.parametrize("text, words", [("cuts: [", ["cannot read"]),
                                         ("cuts:\n  bogus: 3\n", ["cut 'bogus': must be a mapping"])])
def test_bad_cuts_file_is_one_line_not_an_input_function_exception(tmp_path, text, words):
    (tmp_path / "cuts.yaml").write_text(text)
    cfg = tiny_config(tmp_path / "results")
    cfg["labels"] = {"cuts_file": str(tmp_path / "cuts.yaml")}
    proc = snakemake(tmp_path, write_config(tmp_path / "c.yaml", cfg), "-n", check=False)
    one_line_failure(proc, "cuts.yaml", "labels.cuts_file", *words)


def test_config_error_is_one_line(tmp_path):
    cfg = tiny_config(tmp_path / "results")
    cfg["bogus_key"] = 1
    proc = snakemake(tmp_path, write_config(tmp_path / "c.yaml", cfg), "-n", check=False)
    one_line_failure(proc, "bogus_key", "ConfigError")
