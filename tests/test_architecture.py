"""The package's rooms and the one-way data flow between them (ARCHITECTURE.md), checked on the source with ast:
no module imports itself round a circle, and no room imports a room above it. Imports inside functions and
for type annotations count: each is a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "src" / "dsflexinet"
# Lowest first. A module may import from its own room and the rooms before it, never from a later one.
ROOMS = (
    ("errors", "atomic", "layout", "machine"),
    ("data",),
    ("audio",),
    ("models",),
    ("config",),
    ("modelfile",),
    ("evaluate",),
    ("distill",),
    ("train",),
    ("quant",),
    ("report",),
    ("cli", "__main__"),
)
ROOM_OF = {name: index for index, names in enumerate(ROOMS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.Module) -> set[str]:
    """Every `dsflexinet` module imported anywhere in the file: at the top, inside functions and under
    `if TYPE_CHECKING:` (a type annotation is a dependency too)."""
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names if alias.name.startswith("dsflexinet")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dsflexinet"):
            modules = {f"{node.module}.{alias.name}" for alias in node.names}
            imported |= {name for name in modules if _exists(name)} or {node.module}
    return imported


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        graph[name] = {target for target in _imports(ast.parse(path.read_text())) if target != name}
    return graph


def _room(module: str) -> int:
    parts = module.split(".")
    room = parts[1] if len(parts) > 1 else "__init__"
    assert room in ROOM_OF or room == "__init__", f"{module}: in no room of ROOMS (add it there and to ARCHITECTURE.md)"
    return ROOM_OF.get(room, -1)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """The modules of one import cycle (depth-first search), the first repeated at the end; None if there is none."""
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return [*path, module, target]
            if target not in state and (cycle := visit(target, [*path, module])):
                return cycle
        state[module] = "done"
        return None

    return next((cycle for module in graph if module not in state and (cycle := visit(module, []))), None)


def test_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 40  # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_imports_run_down_the_rooms() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if _room(target) > _room(module)
    ]
    assert not upward, f"imports from a higher room: {upward}"


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The walk sees imports inside functions and in TYPE_CHECKING blocks."""
    source = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dsflexinet.cli import main\n"
        "def f():\n    from dsflexinet.train import run\n"
    )
    assert _imports(ast.parse(source)) == {"dsflexinet.train.run", "dsflexinet.cli"}
    assert _room("dsflexinet.train.run") > _room("dsflexinet.models.registry")
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None  # a diamond is no cycle
