"""No import cycle between the modules of `cryopipe`, function-level imports included.

Every module of src/cryopipe is parsed (not imported); an edge A -> B is any `import`/`from ... import`
of a cryopipe module B anywhere in A (module level, inside functions, under TYPE_CHECKING), except in
an `if __name__ == "__main__":` block (a script entry runs as __main__, no module imports it).
`from pkg import name` is an edge to `pkg.name` when that is a module, else to `pkg`.
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "cryopipe"


def module_names(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package by its __init__)."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of a (relative) import target seen in `module`."""
    if level == 0:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _is_main_block(node) -> bool:
    """`if __name__ == "__main__":` at module level."""
    return isinstance(node, ast.If) and ast.unparse(node.test).replace("'", '"') == '__name__ == "__main__"'


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its body)."""
    modules = module_names(src, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}

    def resolve(name: str) -> str | None:
        while name and name not in modules:  # `import cryopipe.io.cresst.x`: the module part
            name = name.rpartition(".")[0]
        return name or None

    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        entry = {id(n) for block in tree.body if _is_main_block(block) for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in entry:
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(name, is_package, node.level, node.module)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                if target.split(".")[0] != package:
                    continue
                resolved = resolve(target)
                if resolved and resolved != name:
                    graph[name].add(resolved)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (each one or more cycles), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    counter = 0

    def visit(v: str) -> None:  # Tarjan; the graph is small, recursion depth stays low
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components)


def test_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "cryopipe.io.csmpl" in graph["cryopipe.io.sources"]  # imported inside open_stream
    assert "cryopipe.errors" in graph["cryopipe.io.csmpl"]  # `from ..errors import InputError`


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]


def test_the_old_io_cycle_would_be_found():
    """csmpl took TestPulses from sources, which opens csmpl and cresst (which imports csmpl)."""
    graph = import_graph()
    graph["cryopipe.io.csmpl"].add("cryopipe.io.sources")
    assert any({"cryopipe.io.csmpl", "cryopipe.io.sources"} <= set(c) for c in find_cycles(graph))


def test_no_import_cycle_in_io():
    cycles = [c for c in find_cycles(import_graph()) if any(m.startswith("cryopipe.io") for m in c)]
    assert not cycles, cycles


def test_no_import_cycle_anywhere():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (each group imports itself round about): " + "; ".join(
        " <-> ".join(c) for c in cycles)
