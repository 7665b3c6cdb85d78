"""The layering, checked from the source: services/ is the engine and imports neither the app, nor the
widgets, nor Textual; widgets render and never import the app; screens never import the CLI; and no two
modules import each other, directly or around a circle. (That services/ runs without Textual loaded
is checked in a fresh interpreter by ``test_units``.) (imports inside functions and under
TYPE_CHECKING count: a reader follows them all the same)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "services", "widgets", "styles")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, as a dotted name (relative imports resolved)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # ``from services import dump``
    return out


def graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    names = {module_name(p) for p in files}
    return {module_name(p): {m for m in imports_of(p) if m in names and m != module_name(p)} for p in files}


def test_the_layers_import_only_downwards():
    broken = []
    for mod, deps in graph().items():
        for dep in deps:
            if mod.startswith("services") and dep.startswith(("app", "widgets")):
                broken.append(f"{mod} -> {dep}")
            if mod.startswith("widgets") and dep.startswith("app"):
                broken.append(f"{mod} -> {dep}")
            if mod.startswith("app.screens") and dep.startswith("app.cli"):
                broken.append(f"{mod} -> {dep}")
    textual = [f"{p.relative_to(ROOT)}" for p in (ROOT / "services").rglob("*.py")
               if any(m.split(".")[0] in ("textual", "rich") for m in imports_of(p))]
    assert broken == [] and textual == []


def test_no_import_cycles():
    deps = graph()
    cycles, state = [], {}

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = "open"
        for dep in sorted(deps.get(mod, ())):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[mod] = "done"

    for mod in sorted(deps):
        if mod not in state:
            visit(mod, [mod])
    assert cycles == []
