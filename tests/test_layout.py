"""The shape of the library: no import cycle, small modules, tensors never placed on the CPU by name.

These walk the source (``ast``), so they also see imports inside functions, which hide cycles from Python
(the import only runs when the function does).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from refusal.paths import REPO_ROOT

LIB = REPO_ROOT / "lib" / "refusal"
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(LIB.rglob("*.py")):
        parts = p.relative_to(LIB.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Project modules that ``name`` imports, at any depth of its source (functions included)."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `from refusal.x import name`: the module is refusal.x
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith("refusal"):
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_import_cycle_in_the_library():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_function_level_imports_are_seen(tmp_path):
    mods = {"refusal.a": tmp_path / "a.py", "refusal.b": tmp_path / "b.py"}
    mods["refusal.a"].write_text("def f():\n    from refusal.b import g\n    return g\n")
    assert _imports(mods["refusal.a"], "refusal.a", mods) == {"refusal.b"}


def test_library_tree_shows_the_stages():
    for pkg in ("data", "extraction", "intervention", "evaluation", "organisms", "report"):
        assert (LIB / pkg / "__init__.py").exists(), pkg


@pytest.mark.parametrize("name", sorted(_modules()))
def test_modules_are_small(name):
    n = len(_modules()[name].read_text().splitlines())
    assert n <= MAX_LINES, f"{name}: {n} lines (split it: one job per module)"


def _cpu_placements(source: str) -> list[int]:
    """Lines of ``source`` that place a tensor on the CPU by name: ``.cpu()``, a ``"cpu"`` device literal
    (``device="cpu"``, ``.to("cpu")``, ``torch.device("cpu")``, ``map_location="cpu"``)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "cpu":
            lines.append(node.lineno)
        if isinstance(node, ast.Constant) and node.value == "cpu":
            lines.append(node.lineno)
    return sorted(set(lines))


def test_no_tensor_is_placed_on_the_cpu_by_name():
    """Library tensors follow the model's device; the host is named in exactly one place, refusal.device."""
    offenders = {name: lines for name, p in _modules().items() if name != "refusal.device"
                 if (lines := _cpu_placements(p.read_text()))}
    assert not offenders, offenders


def test_the_cpu_check_sees_each_form():
    src = 'a = x.cpu()\nb = x.to("cpu")\nc = torch.device("cpu")\nd = torch.zeros(3, device="cpu")\ne = x.to(dev)\n'
    assert _cpu_placements(src) == [1, 2, 3, 4]


def test_every_paired_notebook_matches_its_script():
    """notebooks/NN_stage.ipynb holds the same cells as its Jupytext script: papermill executes the .ipynb, so a
    script edited without `make notebooks` would otherwise run stale code wherever the pair is not synced first."""
    import jupytext

    from refusal.paths import NOTEBOOKS_DIR

    pairs = sorted(NOTEBOOKS_DIR.glob("*.py"))
    assert pairs
    stale = []
    for py in pairs:
        ipynb = py.with_suffix(".ipynb")
        assert ipynb.exists(), f"{ipynb}: missing (run `make notebooks`)"
        cells = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]  # noqa: E731
        if cells(jupytext.read(py)) != cells(jupytext.read(ipynb)):
            stale.append(ipynb.name)
    assert not stale, f"out of sync with their .py (run `make notebooks` and commit): {stale}"
