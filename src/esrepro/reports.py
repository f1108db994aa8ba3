"""Render a paper's figure notebook: papermill executes it, nbconvert turns it into HTML.

Every paper has one notebook, ``src/esrepro/notebooks/<paper>.ipynb``, with a cell tagged
``parameters``. A report stage calls :func:`render_notebook` with the paths of the stage's inputs;
the executed notebook and a self-contained HTML page (images embedded) land in ``output_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
from nbconvert import HTMLExporter
from papermill.exceptions import PapermillExecutionError

from esrepro.config import repo_root
from esrepro.plain_json import plain_json

#: Kernel used for every report; the venv's ``python3`` kernel runs ``sys.executable``
#: (jupyter_client substitutes it for a bare ``python``), so it sees the installed package.
KERNEL_NAME = "python3"


class NotebookExecutionError(PapermillExecutionError):
    """A cell of a report notebook raised; the message names the notebook and its executed copy.

    Subclasses papermill's error so callers catching ``PapermillExecutionError`` still do, while
    the message (papermill's own names only the cell) says which notebook failed and where the
    partially executed copy, with the error in its outputs, was written.
    """

    def __init__(self, notebook: Path, executed: Path, error: PapermillExecutionError) -> None:
        super().__init__(
            error.cell_index,
            error.exec_count,
            error.source,
            error.ename,
            error.evalue,
            error.traceback,
        )
        self.notebook = Path(notebook)
        self.executed = Path(executed)

    def __str__(self) -> str:
        return (
            f"notebook {self.notebook} failed (executed copy with the error: {self.executed})"
            + super().__str__()
        )


def notebook_path(paper: str) -> Path:
    """The packaged figure notebook of ``paper`` (``src/esrepro/notebooks/<paper>.ipynb``)."""
    path = Path(__file__).parent / "notebooks" / f"{paper}.ipynb"
    if not path.is_file():
        raise FileNotFoundError(f"no report notebook for paper {paper!r}: {path}")
    return path


def render_notebook(
    notebook: Path,
    output_dir: Path,
    parameters: dict[str, Any],
    *,
    html_name: str,
    cwd: Path | None = None,
    kernel_name: str = KERNEL_NAME,
) -> Path:
    """Execute ``notebook`` with ``parameters`` and write the executed notebook and its HTML.

    Args:
        notebook: the source notebook (it must have a cell tagged ``parameters``).
        output_dir: receives ``<stem>.ipynb`` (executed, with outputs) and ``html_name``, where
            ``<stem>`` is ``html_name`` without its suffix.
        parameters: values injected after the ``parameters`` cell; ``Path`` values become str.
        html_name: file name of the HTML page, e.g. ``"dosnp.html"``.
        cwd: working directory of the kernel; the repository root by default, so relative
            paths in parameters mean the same as in ``params.yaml``.
        kernel_name: Jupyter kernel to run.

    Returns:
        The path of the HTML page.

    Raises:
        NotebookExecutionError: (a ``PapermillExecutionError``) when a cell raises; the
            message names the notebook and the executed copy holding the error.
        FileNotFoundError: when ``notebook`` does not exist.
    """
    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"report notebook not found: {notebook}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    html_path = output_dir / html_name
    executed = output_dir / f"{html_path.stem}.ipynb"
    # A stale page from an earlier run must not survive a failed execution and look current.
    html_path.unlink(missing_ok=True)

    try:
        pm.execute_notebook(
            str(notebook),
            str(executed),
            # papermill writes parameters into a code cell via repr: a Path would come out as
            # "PosixPath(...)" and fail inside the kernel.
            parameters=plain_json(parameters, what="notebook parameters"),
            kernel_name=kernel_name,
            cwd=str(cwd if cwd is not None else repo_root()),
            progress_bar=False,
            log_output=False,
        )
    except PapermillExecutionError as err:
        raise NotebookExecutionError(notebook, executed, err) from err

    nb = nbformat.read(executed, as_version=4)
    exporter = HTMLExporter()
    # Figures are PNG outputs (already inline base64); embed_images also inlines any image a
    # markdown cell references, so the page is one self-contained file.
    exporter.embed_images = True
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": html_path.stem}})
    tmp = html_path.with_name(html_path.name + ".tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(html_path)
    return html_path


def render_report(
    notebook: Path, html: Path, executed: Path, parameters: dict[str, Any]
) -> Path:
    """A report stage's rendering: ``notebook`` executed into ``executed`` and ``html``.

    :func:`render_notebook` names the executed copy after the page (``<html stem>.ipynb``
    beside it), so a stage declaring another path would never produce it: refused here.
    """
    if Path(executed) != Path(html).with_suffix(".ipynb"):
        raise ValueError(
            f"the executed notebook is written to {Path(html).with_suffix('.ipynb')}, "
            f"not {executed}"
        )
    return render_notebook(notebook, Path(html).parent, parameters, html_name=Path(html).name)
