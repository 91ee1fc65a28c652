"""The package's modules import one way: no cycle, counting imports inside functions too."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "deltalearn"


def _modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = f.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _targets(mods: dict, name: str, node) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    pkg = name if mods[name].name == "__init__.py" else name.rsplit(".", 1)[0]
    for _ in range(max(node.level - 1, 0)):
        pkg = pkg.rsplit(".", 1)[0]
    base = (f"{pkg}.{node.module}" if node.module else pkg) if node.level else node.module
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for t in _targets(mods, name, node):
                    while t not in mods and "." in t:
                        t = t.rsplit(".", 1)[0]
                    # a package's own __init__ (version, re-exports) is not an edge of the layering
                    if t in mods and t != name and t != "deltalearn" and not name.startswith(t + "."):
                        graph[name].add(t)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(v, path):
        state[v] = 1
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state and (found := visit(w, path + [w])):
                return found
        state[v] = 2
        return None

    return next((c for v in sorted(graph) if v not in state and (c := visit(v, [v]))), None)


def test_the_import_graph_has_no_cycle():
    assert _cycle(_graph()) is None


def test_the_cycle_check_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
