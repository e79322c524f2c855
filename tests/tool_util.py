"""Load a script of tools/ (not a package) as a module, for tests of its functions."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_tool(relative_path: str):
    """The module of ROOT/`relative_path` (e.g. "tools/experiments/independent_diagnosis.py"), executed."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
