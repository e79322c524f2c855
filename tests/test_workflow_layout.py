"""The layout rule of issue 22, kept everywhere: each workflow script calls exactly one
`cryopipe.<topic>.stage.run_*` function and computes nothing; a stage module never imports another
topic's stage module; topic `__init__` modules import nothing; no library module over 800 lines."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"
SRC = REPO / "src" / "cryopipe"
TOPICS = ("trigger", "characterize", "calibrate", "efficiency", "testpulse", "cuts", "cleaning", "features",
          "simulate")


def imports(tree):
    """(module, name) of every `from module import name` anywhere in the tree."""
    return [(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]


def test_every_script_calls_one_stage_function_and_nothing_else():
    bad = {}
    for path in sorted(SCRIPTS.glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = imports(tree)
        plain = [n for n in ast.walk(tree) if isinstance(n, ast.Import)]
        stage = [(m, n) for m, n in imported if m.endswith(".stage") and m.split(".")[1] in TOPICS
                 and n.startswith("run_")]
        others = [(m, n) for m, n in imported if (m, n) not in stage and (m, n) != ("cryopipe.runner", "step")]
        calls = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
        computed = [c for c in calls if c not in {"step", "dict", "list", "str", "int", "float", "tuple", "bool"}
                    and c not in {n for _, n in stage}]
        if len(stage) != 1 or others or plain or calls.count(stage[0][1] if stage else "") != 1 or computed:
            bad[path.name] = {"stage": stage, "other imports": others + [ast.unparse(p) for p in plain],
                              "other calls": computed}
    assert not bad, bad


def test_no_stage_module_imports_another_topics_stage():
    bad = []
    for topic in TOPICS:
        path = SRC / topic / "stage.py"
        if not path.exists():
            continue
        for module, _ in imports(ast.parse(path.read_text())):
            if module and module.endswith(".stage") and module != f"cryopipe.{topic}.stage":
                bad.append((topic, module))
    assert not bad, bad
    assert not (SRC / "stages").exists()


def test_topic_packages_have_light_inits():
    heavy = {}
    for topic in TOPICS + ("signal",):
        tree = ast.parse((SRC / topic / "__init__.py").read_text())
        found = [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
                 and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
        if found:
            heavy[topic] = found
    assert not heavy, heavy


def test_no_module_over_800_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 800}
    assert not long, long


def test_test_files_carry_a_topic_prefix():
    """tests/ mirror the topics: test_<topic>[_what].py, topic a package of cryopipe or 'workflow'."""
    topics = {p.name for p in (REPO / "src" / "cryopipe").iterdir() if (p / "__init__.py").is_file()} | {"workflow"}
    stray = [p.name for p in (REPO / "tests").glob("test_*.py")
             if not any(p.stem == f"test_{t}" or p.stem.startswith(f"test_{t}_") for t in topics)]
    assert not stray, stray
