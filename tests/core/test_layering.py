"""The library's modules import in one direction only, with no cycle, functions included.

Every ``import`` statement of ``src/demp`` (also those inside functions) is read with
``ast``; each module belongs to a layer, and may import only from its own layer or below.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# lowest first; a module may import from its own layer and the ones before it
LAYERS = [
    ("demp.errors", "demp.schedules"),
    ("demp.batches", "demp.accounting"),
    ("demp.ops", "demp.masks"),
    ("demp.structure",),
    ("demp.death",),
    ("demp.surgery",),
    ("demp.algorithm",),
    ("demp.tracking", "demp.checkpoint"),
    ("demp.methods",),
    ("demp.integrations",),
    ("demp",),  # the package's public face re-exports the library
    ("demp.experiments", "demp.__main__"),
]


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank is not None, module
    return rank


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "demp").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "demp"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "demp":
                target = node.module
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known}


GRAPH = {name: imports_of(name, path, set(modules())) for name, path in modules().items()}


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_imports_point_down(name):
    upward = sorted(m for m in GRAPH[name] if layer_of(m) > layer_of(name))
    assert not upward, f"{name} imports from a higher layer: {upward}"


def test_no_import_cycle():
    def own_package(src: str, dst: str) -> bool:
        return src.startswith(dst + ".")  # a submodule reading its package's __init__

    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if own_package(v, w):
                continue
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
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_library_never_imports_the_experiments():
    for name, deps in GRAPH.items():
        if not name.startswith("demp.experiments") and name != "demp.__main__":
            assert not any(d.startswith("demp.experiments") for d in deps), name
