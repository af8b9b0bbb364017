"""The package's shape: imports run one way (no module imports one that imports it back, directly or
round a loop), nothing imports the command line, and every score is declared once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import inductscan
from inductscan import metrics
from inductscan.results.schema import SCHEMA

PACKAGE = Path(inductscan.__file__).parent


def imports_of(path: Path) -> set[str]:
    """The inductscan modules a file imports anywhere in it (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("inductscan"):
            if node.module == "inductscan":
                found |= {f"inductscan.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("inductscan.")}
    return found


def module_graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[name] = imports_of(path) - {name}
    return graph


def test_imports_run_one_way():
    graph = {name: targets for name, targets in module_graph().items() if name != "inductscan"}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", "import loop: " + " -> ".join([*trail, name])
        state[name] = "open"
        for target in sorted(graph.get(name, ())):
            visit(target, [*trail, name])
        state[name] = "done"

    for name in sorted(graph):
        visit(name, [])


def test_nothing_imports_the_command_line_and_it_imports_no_internals_of_a_scan():
    graph = module_graph()
    command_line = {name for name in graph if name == "inductscan.cli" or name.startswith("inductscan.cli.")}
    assert len(command_line) > 1  # the package and its modules
    assert not [name for name, targets in graph.items() if name not in command_line and targets & command_line]
    internals = {
        "inductscan.weights",
        "inductscan.model",
        "inductscan.measure",
        "inductscan.pipeline",
        "inductscan.checkpoints",
        "inductscan.hub",
    }
    assert not {name: graph[name] & internals for name in command_line if graph[name] & internals}


def test_every_score_is_declared_once_and_the_table_follows():
    score_columns = [name for name in SCHEMA.names if name in metrics.METRICS]
    assert score_columns == list(metrics.METRICS)


HEAVY = ("torch", "transformers", "pandas", "pyarrow", "matplotlib")


def loaded_after(code: str) -> list[str]:
    import subprocess
    import sys

    shown = "print(' '.join(name for name in HEAVY if name in sys.modules))"
    script = f"import sys; HEAVY = {HEAVY!r}; {code}; {shown}"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()


def test_import_inductscan_loads_nothing_heavy():
    assert loaded_after("import inductscan") == []
    assert loaded_after("import inductscan; inductscan.load_results") == ["pandas", "pyarrow"]  # a reader: no torch


def test_commands_that_read_tables_import_no_torch():
    assert loaded_after("import inductscan.cli") == []  # each command imports what it needs when it runs
    query = "from inductscan.results import sql; sql.SHOWN"  # what `inductscan query` imports: DuckDB, no pandas
    assert loaded_after(query) == []


def test_every_document_cited_is_in_the_repository():
    """A docstring or comment that cites a document (``docs/scores.md``, ``BENCHMARKS.md``) names a
    file a reader of the repository can open."""
    root = PACKAGE.parent
    cited = {}
    for folder in ("inductscan", "tests", "scripts"):
        for path in (root / folder).rglob("*.py"):
            for name in re.findall(r"[\w./-]+\.md\b", path.read_text()):
                cited.setdefault(name, path.relative_to(root))
    assert cited and {name: where for name, where in cited.items() if not (root / name).is_file()} == {}


def test_only_the_results_package_reads_or_writes_parquet_or_duckdb():
    """Results files are read and written by inductscan/results/ alone: no module outside it
    imports pyarrow's parquet or dataset readers or DuckDB, or calls them."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "results" and path.parent.parent == PACKAGE:
            continue
        text = path.read_text()
        for pattern in (
            r"import pyarrow\.(parquet|dataset)",
            r"\bimport duckdb\b",
            r"\bpq\.",
            r"\bduckdb\.",
            r"parquet\(",
        ):
            if re.search(pattern, text):
                found.append((path.relative_to(PACKAGE).as_posix(), pattern))
    assert found == []


def test_no_module_reaches_into_another_modules_private_names():
    """``module._name`` never appears across modules: a module's underscore names are its own."""
    modules = {name.rsplit(".", 1)[-1] for name in module_graph()}
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                private = node.attr.startswith("_") and not node.attr.startswith("__")
                if private and node.value.id in modules:
                    found.append(f"{path.relative_to(PACKAGE)}: {node.value.id}.{node.attr}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("inductscan"):
                found += [f"{path.relative_to(PACKAGE)}: {node.module}.{alias.name}" for alias in node.names
                          if alias.name.startswith("_") and not alias.name.startswith("__")]  # fmt: skip
    assert found == []
