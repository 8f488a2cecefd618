"""The package layout: no import cycles in the libraries (function-level imports included, since they hide a cycle
rather than break it), and the libraries free of tools: no module of neural/ or addon/ but the `__main__`
dispatchers builds or fills a command line (argparse), runs as a script, or imports the tools in commands/.
neural/cli.py, the error block and argument types that every command line shares, is the one exception: it only
defines them (and the extension's headless render uses its exit codes)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("neural", "training", "addon")


def _modules(packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name → file, for every .py under the packages (a package's __init__ under its own name)."""
    found = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported(module: str, path: Path, tree: ast.Module, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that `module` imports anywhere in its file."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - (node.level - (path.name == "__init__.py"))]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            names |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
    out = set()
    for name in names:
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in known and name != module:
            out.add(name)
    return out


def import_graph(packages: tuple[str, ...] = LIBRARIES) -> dict[str, set[str]]:
    known = _modules(packages)
    return {m: _imported(m, p, ast.parse(p.read_text()), known) for m, p in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_hidden_cycle():
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}
    assert cycles(graph) == [["a.x", "a.y", "a.z"]]
    assert cycles({"a.x": {"a.y"}, "a.y": set()}) == []


def test_the_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "neural.body_convert" in graph["neural.body"] or "neural.body" in graph["neural.body_convert"]
    assert "addon.frames" in graph["addon.preview"]  # `from . import frames`
    assert "training.crop" in graph["training.photos.fit"]  # `from ..crop import ...`
    assert "neural.retarget" in graph["neural.amass"]  # imported inside a function


def test_libraries_have_no_import_cycles():
    found = cycles(import_graph())
    assert found == [], "import cycles (split the modules along a seam): " + "; ".join(" ↔ ".join(c) for c in found)


def test_library_modules_carry_no_command_lines():
    offenders = []
    for name, path in _modules(("neural", "addon")).items():
        if path.name == "__main__.py":
            continue
        tree = ast.parse(path.read_text())
        imports = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                   for alias in node.names}
        imports |= {node.module.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module and not node.level}
        main_block = any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body)
        parser = any(isinstance(node, ast.Call) and ast.unparse(node.func).endswith("ArgumentParser")
                     for node in ast.walk(tree))
        if main_block or parser or "commands" in imports or ("argparse" in imports and name != "neural.cli"):
            offenders.append(name)
    assert offenders == [], f"command-line code in library modules (move it to commands/): {offenders}"
