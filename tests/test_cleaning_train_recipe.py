"""The shipped universal model is reproducible: its meta records the recipe that
`python tools/release/train_universal.py` runs with its defaults, and where the weights came from."""
import json
import subprocess
import sys
from pathlib import Path

from cryopipe.cleaning.architectures import universal_path

ROOT = Path(__file__).resolve().parents[1]


def _recipe(*args):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "release" / "train_universal.py"), "--print-recipe", *args],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout)


def test_defaults_reproduce_the_shipped_configuration():
    meta = json.loads(universal_path().with_suffix(".json").read_text())
    shipped = json.loads(json.dumps(meta["training"]))
    assert _recipe() == shipped
    assert meta["model"] == shipped["model"] and meta["epochs"] == shipped["epochs"]
    assert meta["schedule"] == shipped["lr_schedule"] and meta["keep"] == "last"


def test_shipped_meta_says_where_the_weights_come_from():
    meta = json.loads(universal_path().with_suffix(".json").read_text())
    for key in ("git_commit", "torch_version", "command", "train_seconds", "train_records_per_second",
                "temperature", "ood_threshold", "ood_feature_threshold", "cutoff"):
        assert meta.get(key) is not None, key
    # recorded when the script lived in bench/; the recipe script is the same file, now in tools/release
    assert meta["command"].split()[:2] in (["python", "bench/train_universal.py"],
                                           ["python", "tools/release/train_universal.py"])
    assert meta["finished"] is True and meta["train_seconds"] <= 90 * 60
    assert universal_path().with_name("universal.ood.npz").is_file()


def test_options_change_the_recipe():
    assert _recipe("--epochs", "3")["epochs"] == 3
    assert _recipe("--wide-parts", "0")["wide_parts"] == 0 and "wide" not in _recipe("--wide-parts", "0")["simulation"]


def test_resume_of_a_finished_model_is_refused_in_one_line(tmp_path):
    out = tmp_path / "done.pt"
    out.write_bytes(b"weights")
    out.with_suffix(".json").write_text(json.dumps({"finished": True}))
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "release" / "train_universal.py"), "--out", str(out),
                           "--resume", "--scale", "0.001"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1 and "is finished" in proc.stderr and "drop --resume" in proc.stderr
    assert "Traceback" not in proc.stderr and out.read_bytes() == b"weights"
