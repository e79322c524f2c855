"""Every shell command the docs show runs, as a new user would type it.

Commands come from README.md (```bash blocks, and inline `snakemake ...` / `cryopipe ...` /
`python ...` spans without placeholders) and from the comments of config/*.yaml. They run in a
scratch copy of the project, in document order, on small data written here by independent code
(numpy pulses and noise, CRESST files from their public layout), not by the pipeline's simulator.
Set-up lines (`pip install`, `pytest`) are run by CI itself; `--workflow-profile profiles/slurm`
runs in tests/test_workflow_slurm.py; the documented benchmarks and model commands (`python bench/...`,
`python tools/...`, `python -m cryopipe.cleaning.evaluate`), hours long at their documented sizes, run here
as documented with the options of `SMALL_SCALE` appended (argparse keeps the last value of a repeated
option), or, where `RUN_ELSEWHERE` names a test file, there.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PROGRAMS = ("snakemake", "cryopipe", "python")
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]{2,}\b")  # INPUT, STORE, OUT_DIR, FILE.h5 ...


def readme_commands(text: str) -> list[str]:
    """Shell commands of README.md, in order: lines of ```bash blocks (split at &&) and inline
    code spans that start with a program name and hold no placeholder."""
    commands = []
    for block, inline in re.findall(r"```bash\n(.*?)```|`([^`\n]+)`", text, flags=re.S):
        if block:
            for line in block.splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                commands += [part.strip() for part in line.split("&&") if part.strip()]
        elif inline.split(" ")[0] in PROGRAMS and " " in inline and not PLACEHOLDER.search(inline):
            commands.append(inline.strip())
    return commands


def config_commands() -> list[str]:
    """Commands written in the comments of config/*.yaml (indented, or after "Run:")."""
    out = []
    for path in sorted((REPO / "config").glob("*.yaml")):
        for line in path.read_text().splitlines():
            # a command stands indented in a comment ("#   snakemake ...") or after "Run:"
            m = re.match(r"\s*#(?:\s*Run:\s*|\s{2,})((?:snakemake|cryopipe|python) .*)$", line)
            if m:
                out.append(m.group(1).strip())
    return out


def test_extraction_finds_the_documented_commands():
    """The parser itself: a command in each documented form is found, placeholders are not."""
    text = "x\n```bash\npip install a && snakemake --cores all   # run\npytest\n```\n`cryopipe schema`, `cryopipe inspect STORE`"
    assert readme_commands(text) == ["pip install a", "snakemake --cores all", "pytest", "cryopipe schema"]
    found = config_commands()
    assert any("--configfile=config/mock.yaml" in c for c in found)
    assert any("--configfile=config/cresst.yaml" in c for c in found)


def test_every_documented_benchmark_has_a_small_run():
    """Each documented `python bench/...`, `python tools/...`, `python -m ...` command runs here at a small
    scale or in the test file RUN_ELSEWHERE names (which runs that script); none is only `--help`ed."""
    keys = {_program_key(c.split()) for c in readme_commands((REPO / "README.md").read_text()) + config_commands()}
    keys.discard(None)
    assert "bench/bench_pipeline.py" in keys and "-m cryopipe.cleaning.evaluate" in keys
    for key in keys:
        assert key in SMALL_SCALE or key in RUN_ELSEWHERE, key
        if key in RUN_ELSEWHERE:
            assert Path(key).name in (REPO / RUN_ELSEWHERE[key]).read_text(), key
    run = _runnable("python bench/bench_pipeline.py --hours 1 4 24 --default-job", Path("/s"))
    assert run.endswith("--hours 1 4 24 --default-job --hours 0.25 --compare-hours 0 --channels 1 "
                        "--workdir /s/bench_pipeline")
    assert "[" not in _runnable("python -m cryopipe.cleaning.evaluate [--model M] [--quick]", Path("/s"))


def test_documented_commands_never_put_a_target_after_a_spaced_configfile():
    """`--configfile FILE target` swallows the target (Snakemake takes several config files)."""
    for cmd in readme_commands((REPO / "README.md").read_text()) + config_commands():
        words = shlex.split(cmd)
        if "--configfile" in words:
            rest = words[words.index("--configfile") + 2:]
            assert not rest or rest[0].startswith("-"), cmd


# ---------------------------------------------------------------- data written by independent code

def _pulse(n: int, fs: float, rise: float, decay: float) -> np.ndarray:
    t = np.arange(n) / fs
    p = np.exp(-t / decay) - np.exp(-t / rise)
    return p / p.max()


def write_mock_stream(path: Path, seconds: float = 240.0, fs: float = 25_000.0, seed: int = 11) -> None:
    """A one-channel int16 stream: 0.4 Hz pulses of 5-300 mV on white noise + 50 Hz hum, 20 V range."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    volts = rng.normal(0.0, 2e-3, n) + 1e-3 * np.sin(2 * np.pi * 50.0 * np.arange(n) / fs)
    shape = _pulse(8192, fs, 1e-3, 30e-3)
    for t0 in np.sort(rng.uniform(1.0, seconds - 1.0, int(0.4 * seconds))):
        i = int(t0 * fs)
        m = min(len(shape), n - i)
        volts[i:i + m] += rng.uniform(5e-3, 0.3) * shape[:m]
    adc = np.clip(np.rint(volts / (20.0 / 2**16)), -32768, 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    adc.tofile(path)


def write_cait_events(path: Path, n: int = 40, samples: int = 4096) -> None:
    """A Cait-layout HDF5 file: events/event (channels, events, samples) float32 V."""
    import h5py

    rng = np.random.default_rng(5)
    ev = rng.normal(0, 1e-3, (2, n, samples)).astype(np.float32)
    ev += (rng.uniform(0.01, 0.5, (2, n, 1)) * _pulse(samples, 25_000.0, 1e-3, 20e-3)[None, None]
           * (np.arange(samples) >= samples // 4)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_group("events").create_dataset("event", data=ev)


def write_cresst_runs(data: Path) -> None:
    """The files config/cresst.yaml names, in the public CRESST layouts."""
    from cresst_util import write_cresst_rdt_run, write_cresst_stream_run

    write_cresst_stream_run(data, "run01", duration=90.0, record_length=4096, particle_rate=1.0, seed=3)
    write_cresst_rdt_run(data, "run02", n_particle=120, n_noise=60, n_testpulse=40, record_length=4096, seed=4)


def write_ljh_files(data: Path) -> None:
    """The files config/ljh.yaml names: the measured NIST files where this machine has them (read
    only, copied), else records of pulses and of noise from the independent LJH writer of the tests."""
    from real_data import NIST_DIR as real
    names = ("regress_chan1.ljh", "regress_noise_chan1.ljh")
    data.mkdir(parents=True, exist_ok=True)
    if all((real / n).is_file() for n in names):
        for n in names:
            shutil.copyfile(real / n, data / n)
        return
    from ljh_util import write_pulse_ljh

    write_pulse_ljh(data / names[0], n_records=300, n=1024, presamples=512, version="2.1.0", seed=8)
    write_pulse_ljh(data / names[1], n_records=300, n=1024, presamples=512, version="2.1.0", seed=9, pulses=False)


# ---------------------------------------------------------------- running them

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_and_stop(cmd: str, cwd: Path, env: dict) -> None:
    """A long-running server command (cryopipe view): it must answer HTTP, then it is stopped."""
    words = shlex.split(cmd)
    if "--port" in words:
        port = int(words[words.index("--port") + 1])
    else:
        port = _free_port()
        words += ["--port", str(port)]
    proc = subprocess.Popen(words, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"{cmd} exited {proc.returncode}:\n{proc.stdout.read().decode()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200
                    return
            except OSError:
                time.sleep(1.0)
        raise AssertionError(f"{cmd}: no answer on port {port} within 90 s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


#: documented benchmark / model commands -> options appended to run them small ({nist}: the NIST files,
#: {tmp}: a scratch folder); "" runs the command as documented
SMALL_SCALE = {
    "bench/nist_ljh_checks.py": "--data {nist} --out {tmp}/nist_checks",
    "bench/bench_ljh_run.py": "--ljh {nist}/regress_chan1.ljh --noise {nist}/regress_noise_chan1.ljh",
    "bench/bench_train.py": "--models cnn resnet --threads 1 --batch 64 --seconds 0.5",
    "bench/bench_view.py": "--events 20000",
    "bench/bench_trigger.py": "--hours 0.02 --workers 1",
    # 0.25 h: the shortest stream whose calibration line has enough events to be found
    "bench/bench_pipeline.py": "--hours 0.25 --compare-hours 0 --channels 1 --workdir {tmp}/bench_pipeline",
    "tools/release/train_universal.py": "--scale 0.003 --epochs 1 --out {tmp}/universal",
    "-m cryopipe.cleaning.evaluate": "--quick --nist-dir {nist} --out {tmp}/evaluate",
    "-m cryopipe.cleaning.real_labels": "",
}
#: documented commands that another test runs (at a small scale), with that test's file
RUN_ELSEWHERE = {"tools/experiments/leave_one_family_out.py": "tests/test_cleaning_experiment_tools.py"}


def _program_key(words: list[str]) -> str | None:
    """'bench/x.py', 'tools/.../x.py' or '-m module' for a documented python command, else None."""
    if words[0] != "python" or len(words) < 2:
        return None
    if words[1] == "-m":
        return " ".join(words[1:3])
    return words[1] if words[1].startswith(("bench/", "tools/")) else None


def _runnable(cmd: str, scratch: Path | None = None) -> str | None:
    """The command as the test runs it (None: run elsewhere)."""
    words = cmd.split()
    if words[0] in ("pip", "pytest") or "profiles/slurm" in cmd:
        return None
    key = _program_key(words)
    if key is None:
        return cmd
    if key in RUN_ELSEWHERE:
        return None
    if key not in SMALL_SCALE:
        raise AssertionError(f"`{cmd}`: a documented command without a small-scale run (add it to SMALL_SCALE)")
    from real_data import NIST_DIR

    documented = re.sub(r"\[[^\]]*\]", "", " ".join(words[1:]))     # optional [--x X] parts left out
    extra = SMALL_SCALE[key].format(nist=NIST_DIR, tmp=scratch or Path("/tmp"))
    return f"{sys.executable} {documented} {extra}".strip()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A scratch copy of the project with the data the docs refer to."""
    work = tmp_path_factory.mktemp("docs") / "cryopipe"
    shutil.copytree(REPO, work, ignore=shutil.ignore_patterns(".git", ".venv", "venv", ".snakemake", "results",
                                                              "__pycache__", "*.egg-info", ".pytest_cache"))
    write_mock_stream(work / "data" / "mock_ch0.csmpl")
    write_cresst_runs(work / "data")
    write_cait_events(work / "events.h5")
    write_ljh_files(work / "data")
    return work


@pytest.mark.slow
def test_every_documented_command_runs(project):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    commands = readme_commands((REPO / "README.md").read_text()) + config_commands()
    ran = []
    (project.parent / "scratch").mkdir(exist_ok=True)
    for cmd in commands:
        run = _runnable(cmd, project.parent / "scratch")
        if run is None:
            continue
        if run.startswith("cryopipe view"):
            _serve_and_stop(run, project, env)
        else:
            proc = subprocess.run(run, shell=True, cwd=project, env=env, capture_output=True, text=True, timeout=1200)
            assert proc.returncode == 0, f"`{cmd}` failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        ran.append(cmd)
    assert any(c.startswith("snakemake --cores all") for c in ran)
    assert (project / "results" / "mock" / "features.zarr").is_dir()
    assert (project / "results" / "stream" / "labels.zarr").is_dir()
    assert (project / "results" / "triggered" / "labels.zarr").is_dir()
    assert (project / "results" / "nist" / "labels.zarr").is_dir()
    assert (project / "results" / "nist" / "predictions" / "universal.zarr").is_dir()
    assert (project / "nist_scores.npz").is_file()
    # the user's run is the whole truth: no energy without a line, nothing of the demo in it
    import xarray as xr

    feats = xr.open_zarr(project / "results" / "mock" / "features.zarr", consolidated=False)
    assert "energy" not in feats and feats.sizes["event"] > 20
