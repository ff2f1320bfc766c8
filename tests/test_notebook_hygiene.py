"""Every notebook follows the workbook's anatomy: stripped, one literal parameters cell, short cells, no hacks."""
from __future__ import annotations

import ast
import re

import nbformat
import pytest

from fmnist_helpers import paths

NOTEBOOKS = sorted(paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
MAX_CELL_LINES = 35
MAX_PROSE_WIDTH = 118  # characters per markdown source line; tables and the generated runtime line are exempt


def test_there_are_notebooks():
    assert NOTEBOOKS, "no numbered notebooks found"
    assert [nb.name[:2] for nb in NOTEBOOKS] == [f"{i:02d}" for i in range(1, len(NOTEBOOKS) + 1)]


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def notebook(request):
    return request.param, nbformat.read(request.param, as_version=4)


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_valid_and_stripped(notebook):
    path, nb = notebook
    nbformat.validate(nb)
    for i, cell in enumerate(code_cells(nb)):
        assert not cell.outputs and cell.execution_count is None, f"{path.name} code cell {i} is not stripped"


def test_title_runtime_and_links(notebook):
    path, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.name[:2]} · ")
    assert "Runtime:" in first.source and "quick mode" in first.source
    assert "Learning goals" in first.source
    assert re.search(r"\]\(\d\d_\w+\.ipynb\)", first.source), "link the previous/next notebook"
    assert any(c.cell_type == "markdown" and c.source.startswith("## Summary") for c in nb.cells)


def test_exactly_one_literal_parameters_cell(notebook):
    path, nb = notebook
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
    cell = nb.cells[tagged[0]]
    tree = ast.parse(cell.source)
    for node, line in zip(tree.body, cell.source.splitlines()):
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, f"{path.name}: {line!r} is not one assignment"
        name = node.targets[0].id
        assert name == name.lower(), f"{path.name}: parameter {name} must be lowercase"
        ast.literal_eval(node.value)
    assert all("#" in line for line in cell.source.splitlines() if line.strip()), "comment every parameter"
    following = next(c for c in nb.cells[tagged[0] + 1:] if c.cell_type == "code")
    assert "fh.resolve_parameters(" in following.source, "resolve the parameters right after the parameters cell"


def test_no_path_hacks_installs_or_long_cells(notebook):
    path, nb = notebook
    for i, cell in enumerate(code_cells(nb)):
        source = cell.source
        assert "sys.path" not in source, f"{path.name} cell {i} edits sys.path"
        assert not re.search(r"^\s*[!%]\s*pip|pip install", source, re.M), f"{path.name} cell {i} installs packages"
        assert len(source.splitlines()) <= MAX_CELL_LINES, f"{path.name} cell {i} is over {MAX_CELL_LINES} lines"


def test_prose_lines_are_short(notebook):
    path, nb = notebook
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if not line.startswith(("|", "Runtime:")):
                assert len(line) <= MAX_PROSE_WIDTH, f"{path.name} cell {i}: reflow {line[:60]!r}..."


def test_one_imports_cell_with_helpers(notebook):
    path, nb = notebook
    first_code = code_cells(nb)[0].source
    assert "import fmnist_helpers as fh" in first_code
    for cell in code_cells(nb)[1:]:
        assert not re.search(r"^import |^from \S+ import ", cell.source, re.M), f"{path.name}: imports belong in the first cell"


def test_figure_names_are_unique_literals(notebook):
    path, nb = notebook
    names = re.findall(r"save_fig\(\s*([^,)]+)", "\n".join(c.source for c in code_cells(nb)))
    literals = [ast.literal_eval(n) for n in names]
    assert all(n.startswith(path.name[:2] + "_") for n in literals)
    assert len(literals) == len(set(literals)), f"{path.name}: duplicate figure names"


def test_papermill_sees_every_parameter(notebook):
    """`papermill --help-notebook` lists each parameter with its comment (quotes in comments break its parser)."""
    import papermill as pm

    path, nb = notebook
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = [node.targets[0].id for node in ast.parse(cell.source).body]
    inspected = pm.inspect_notebook(str(path))
    assert list(inspected) == assigned
    assert all(p["help"] for p in inspected.values()), f"{path.name}: a parameter comment could not be parsed"
