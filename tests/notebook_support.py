"""Running the notebooks from tests: with papermill (a real kernel), or only their parameter cells in-process."""
from __future__ import annotations

from pathlib import Path


def execute_notebook(notebook: str, cwd: Path, output_name: str | None = None, **parameters):
    """Execute ``notebooks/<notebook>.ipynb`` with papermill, working in ``cwd``; return the executed notebook.

    The caller's environment decides the profile and the output folder (``FMNIST_QUICK``, ``FMNIST_OUTPUT_DIR``).
    """
    import papermill as pm

    from fmnist_helpers import paths

    output = Path(cwd) / (output_name or f"{notebook}.out.ipynb")
    return pm.execute_notebook(str(paths.NOTEBOOKS_DIR / f"{notebook}.ipynb"), str(output), parameters=parameters,
                               kernel_name="python3", progress_bar=False, cwd=str(cwd))


def resolve_notebook_parameters(notebook: str, **parameters) -> dict:
    """Run a notebook's imports, parameters and parameter-resolution cells in this process, with ``parameters``
    injected the way papermill injects them, and return the namespace.

    Every notebook validates all of its parameters in the cell that calls ``fh.resolve_parameters``, before any
    data is loaded, so this checks the notebook's own validation in milliseconds instead of a kernel start.
    """
    import keras
    import nbformat
    from papermill.translators import PythonTranslator

    from fmnist_helpers import paths

    nb = nbformat.read(paths.NOTEBOOKS_DIR / f"{notebook}.ipynb", as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    tagged = [i for i, cell in enumerate(code) if "parameters" in cell.metadata.get("tags", [])]
    resolving = [i for i, cell in enumerate(code) if "resolve_parameters(" in cell.source]
    assert len(tagged) == 1 and resolving and tagged[0] < resolving[0], "imports, parameters, then resolution"
    sources = [cell.source for cell in code[:tagged[0] + 1]]
    sources += [PythonTranslator.codify(parameters)] + [cell.source for cell in code[tagged[0] + 1:resolving[0] + 1]]
    namespace: dict = {}
    policy = keras.mixed_precision.global_policy().name
    try:
        for i, source in enumerate(sources):
            exec(compile(source, f"{notebook}.ipynb:cell{i}", "exec"), namespace)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    return namespace


def quick_run(tmp_path_factory, notebook: str, **parameters):
    """Execute ``notebook`` once in quick mode, every output in a fresh temporary folder.

    Returns ``(output folder, executed notebook)``; the quick profile's files are under ``<folder>/quick``.
    """
    import pytest

    out = tmp_path_factory.mktemp(f"{notebook[:2]}_outputs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FMNIST_QUICK", "1")
        patch.setenv("FMNIST_OUTPUT_DIR", str(out))
        nb = execute_notebook(notebook, tmp_path_factory.mktemp(f"{notebook[:2]}_cwd"), **parameters)
    return out, nb


def printed(nb) -> str:
    """Everything the code cells of an executed notebook printed (their stream outputs), one output per line."""
    return "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []) if out.get("output_type") == "stream")
