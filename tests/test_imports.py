"""No import cycles among ganhub's modules, imports inside functions included (parsed, not imported)."""

import ast
from pathlib import Path

import ganhub

PACKAGE = Path(ganhub.__file__).resolve().parent
# The intended layering, lowest first: a module imports only modules on its left (or on its own level).
LAYERS = [
    ["errors"], ["variant"], ["registry"], ["device", "precision", "distributed", "augment"], ["data", "losses", "nets"], ["run"],
    ["step"], ["sample"], ["train"], ["hub"], ["source"], ["extractors", "metrics"], ["testing"], ["cli"],
]


def modules() -> dict[str, Path]:
    return {("ganhub" if p.stem == "__init__" else f"ganhub.{p.stem}"): p for p in sorted(PACKAGE.glob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """ganhub modules imported anywhere in `path` (module level, functions, try blocks, TYPE_CHECKING)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name == "ganhub" or a.name.startswith("ganhub.")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from .x import y
                base = "ganhub" + (f".{base}" if base else "")
            if base == "ganhub":  # from ganhub import run, __version__: submodules or the package itself
                out |= {f"ganhub.{a.name}" if f"ganhub.{a.name}" in known else "ganhub" for a in node.names}
            elif base.startswith("ganhub."):
                out.add(base)
    return out & known


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(p, set(mods)) - {m} for m, p in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(g.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_checker_sees_imports_inside_functions_and_finds_cycles(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from ganhub.run import RunFolder\n    import ganhub.train\n"
                   "try:\n    from ganhub import sample, __version__\nexcept ImportError:\n    pass\n")
    known = {"ganhub", "ganhub.run", "ganhub.train", "ganhub.sample"}
    assert imports_of(src, known) == known
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles_among_ganhub_modules():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_modules_import_only_lower_layers():
    level = {f"ganhub.{m}": i for i, layer in enumerate(LAYERS) for m in layer}
    level["ganhub"] = -1  # the package itself (__version__) imports nothing
    g = graph()
    unplaced = sorted(set(g) - set(level))
    assert not unplaced, f"modules not placed in LAYERS: {unplaced}; add them where they belong"
    upward = [f"{m} -> {n}" for m, deps in g.items() for n in deps if level[n] > level[m]]
    assert not upward, f"imports against the layering {LAYERS}: {upward}"
