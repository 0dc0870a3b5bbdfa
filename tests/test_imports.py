"""Every module of the package imports on its own, and the package's imports form no cycle.

A cycle went unseen for long because the CLI always imported `jobs/cli.py` first: `python -c
"import jobs.nightly"` failed with "partially initialized module" while `ageseg nightly`
worked. Each module is imported here in a fresh interpreter, the way a script, a worker or a
test importing just it would, and the import graph (function-local imports included: they
run too, only later) is read with `ast` and must have no cycle.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("jobs", "models", "analytics", "sql")
# `python -m jobs` runs the CLI: importing it is running it, not a module to import alone.
NOT_IMPORTABLE_ALONE = {"jobs.__main__"}
# Modules of an optional extra, importable only where it is installed.
OPTIONAL = {"jobs.ray_engine": "ray"}


def _modules() -> dict[str, Path]:
    """Every module of the package, dotted name -> file (a package's own name for its
    __init__.py)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _import_alone(module: str) -> tuple[str, int, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    return module, proc.returncode, proc.stderr[-2000:]


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    modules = [m for m in _modules() if m not in NOT_IMPORTABLE_ALONE
               and (m not in OPTIONAL or importlib.util.find_spec(OPTIONAL[m]) is not None)]
    assert "jobs.nightly" in modules and "models.score" in modules
    # One child per module, a few at a time: most take well under a second, the few that
    # load TensorFlow a few seconds each.
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(_import_alone, modules))
    failed = {module: err for module, code, err in results if code != 0}
    assert not failed, "\n\n".join(f"python -c 'import {m}':\n{err}" for m, err in
                                   failed.items())


def _type_checking_only(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` blocks never run, so their imports make no cycle."""
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"))


def _imported(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `module` imports anywhere: at the top, in functions,
    in methods (all but `if TYPE_CHECKING:` blocks)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if _type_checking_only(node):
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            # `from jobs import quiet_tf` imports the module jobs.quiet_tf.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                     for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # `import a.b.c` of a name inside a module
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {module: _imported(module, path, known) for module, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_import_graph_has_no_cycle_function_local_imports_included():
    graph = import_graph()
    assert "jobs.settings" in graph["jobs.nightly"]  # the reader sees the imports
    assert "jobs.preflight" in graph["jobs.check_source"]
    assert "jobs.runner" in graph["jobs.publish"]  # a function-local import counts
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_name_the_benches_and_tests_import_from_the_package_exists():
    """A name moved out of a module breaks the scripts that import it only when they run:
    `bench/camera_quality.py` imported `make_detector` from `jobs.runner` for a week after it
    moved. Every `from <package module> import name` in bench/ and tests/ (function-local
    ones included) must name something the module has."""
    missing = []
    scripts = [*sorted((REPO / "bench").glob("*.py")), *sorted((REPO / "tests").glob("*.py"))]
    for path in scripts:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                    and node.module.split(".")[0] in PACKAGES):
                continue
            if node.module in OPTIONAL and importlib.util.find_spec(
                    OPTIONAL[node.module]) is None:
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name) and importlib.util.find_spec(
                        f"{node.module}.{alias.name}") is None:
                    missing.append(f"{path.relative_to(REPO)}:{node.lineno} "
                                   f"{node.module}.{alias.name}")
    assert not missing, missing
