"""The package's import graph: imports go one way (training -> serving -> explain -> shared), with no cycle.

Read from the source with `ast`, so an import written inside a function counts as much as one at the
top of a module.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "skin_demo"
SHARED = {"skin_demo", "skin_demo.classes", "skin_demo.images", "skin_demo.lesions", "skin_demo.metrics",
          "skin_demo.model_folder", "skin_demo.paths", "skin_demo.plots"}
# what each part may import besides itself and the shared modules
MAY_IMPORT = {
    "skin_demo.explain": (),
    "skin_demo.serving": ("skin_demo.explain",),
    "skin_demo.training": ("skin_demo.serving", "skin_demo.explain"),
    "skin_demo.bench": ("skin_demo.training", "skin_demo.serving", "skin_demo.explain"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_modules(name: str) -> set[str]:
    """Every skin_demo module `name` imports, anywhere in its source."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from X import y` imports the module X.y when there is one, else a name from X
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in MODULES and target != name}
    return found


GRAPH = {name: imported_modules(name) for name in MODULES}


def part(name: str) -> str:
    return next((prefix for prefix in MAY_IMPORT if name == prefix or name.startswith(prefix + ".")), "shared")


def test_the_graph_sees_imports_inside_functions():
    """The CLI imports each command's modules when it runs: those imports are edges too."""
    assert "skin_demo.training.train" in GRAPH["skin_demo.__main__"]
    assert {"skin_demo.serving.classifier", "skin_demo.model_folder"} <= GRAPH["skin_demo.serving.store"]


def test_the_package_has_no_import_cycle():
    state = {}  # name -> "visiting" | "done"

    def visit(name, trail):
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = trail[trail.index(name):] + [name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        state[name] = "visiting"
        for target in sorted(GRAPH[name]):
            visit(target, trail + [name])
        state[name] = "done"

    for name in sorted(GRAPH):
        visit(name, [])


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n != "skin_demo.__main__"))
def test_imports_go_one_way(name):
    """Shared modules import only shared ones; explain, serving, training and bench only what lies below them."""
    allowed = SHARED | {other for other in MODULES if part(other) in (part(name), *MAY_IMPORT.get(part(name), ()))}
    wrong = sorted(GRAPH[name] - allowed)
    assert not wrong, f"{name} ({part(name)}) must not import {', '.join(wrong)}"
