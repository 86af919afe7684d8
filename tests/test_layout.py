"""The layering ARCHITECTURE.md describes, held by the imports themselves: no pipeline imports
another (``pipelines.training`` is the shared one), and the library layer ``tasks`` never
imports a command or the REST API."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> list[str]:
    """Every module a file imports (absolute names; relative imports resolved)."""
    folders = list(path.relative_to(REPO).parts[:-1])  # the top-level folders are genoseq's subpackages
    package = folders if folders[0] == "genoseq" else ["genoseq", *folders]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found += [module] + [f"{module}.{alias.name}" for alias in node.names]
    return found


def test_no_pipeline_imports_another():
    for path in sorted((REPO / "pipelines").glob("*.py")):
        others = {m.split(".")[2] for m in imported_modules(path) if m.startswith("genoseq.pipelines.")}
        assert others <= {"training", path.stem}, f"{path.name} imports pipelines {sorted(others - {'training'})}"


def test_the_library_imports_no_command_or_api():
    for path in sorted((REPO / "tasks").rglob("*.py")):
        above = [m for m in imported_modules(path) if m.startswith(("genoseq.pipelines", "genoseq.api"))]
        assert not above, f"{path.relative_to(REPO)} imports {above}"
