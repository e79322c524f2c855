"""What a workflow job imports: shared by tests/test_workflow_startup.py and bench/bench_startup.py."""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"
HEAVY = ("torch", "matplotlib", "sklearn")
# Scripts allowed to import the heavy packages above (deep-learning cleaning and figures).
HEAVY_OK = re.compile(r"^(plot_.*|train|predict|evaluate|cleaning_report|simulate_records)\.py$")


def script_imports(path: Path) -> str:
    """The import statements of a workflow script (top level), as source."""
    tree = ast.parse(path.read_text())
    lines = [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return "\n".join(lines)


def common_imports() -> str:
    """The imports of the Snakefile and workflow/rules/common.smk (what every Snakemake start pays)."""
    out = []
    for f in (REPO / "Snakefile", REPO / "workflow" / "rules" / "common.smk"):
        for line in f.read_text().splitlines():
            if re.match(r"^(from \S+ import .+|import \S+)$", line) and "snakemake" not in line:
                out.append(line)
    return "\n".join(out)
