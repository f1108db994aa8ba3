"""Render a paper's figure notebook: papermill executes it, nbconvert turns it into HTML.

Every paper has one notebook, ``src/esrepro/notebooks/<paper>.ipynb``, with a cell tagged
``parameters``. A report stage calls :func:`render_notebook` with the paths of the stage's inputs;
the executed notebook and a self-contained HTML page (images embedded) land in ``output_dir``.

The page is for reading offline: code cells are hidden (they stay in the executed ``.ipynb``),
LaTeX math becomes MathML (browsers draw it natively; nbconvert's default needs MathJax from a
CDN), no script is loaded from the network, and the paths the notebook is given or records are
relative to the repository root.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
from jinja2 import DictLoader, pass_context
from latex2mathml.converter import convert as latex_to_mathml
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from papermill.exceptions import PapermillExecutionError

from esrepro.config import repo_root
from esrepro.plain_json import plain_json

#: Kernel used for every report; the venv's ``python3`` kernel runs ``sys.executable``
#: (jupyter_client substitutes it for a bare ``python``), so it sees the installed package.
KERNEL_NAME = "python3"

#: nbconvert's lab page without the scripts it loads from CDNs (require.js, MathJax, mermaid):
#: a report has no widgets or diagrams, and its math is MathML.
_OFFLINE_TEMPLATE = "esrepro_offline.html.j2"
_OFFLINE_TEMPLATE_SOURCE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


#: An absolute path of a machine in a page ("../tmp/x", relative, does not count).
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|root|tmp|home|Users)/[^\s\"'<>)\\]*")
#: LaTeX left as text: ``$…$`` holding a command, a subscript or a superscript.
RAW_MATH = re.compile(r"\$\$?[^$\n<>]*?[\\_^][^$\n<>]*?\$\$?")
_SCRIPT_OR_STYLE = re.compile(r"<(script|style)\b.*?</\1>", re.S | re.I)


def page_problems(text: str) -> list[str]:
    """What a reader's page must not show: LaTeX left as text and machine paths.

    ``text`` is a page's HTML (its scripts and styles are ignored) or the text a browser shows.
    """
    text = _SCRIPT_OR_STYLE.sub("", text)
    found = [f"raw LaTeX {m.group(0)!r}" for m in RAW_MATH.finditer(text)]
    found += [f"machine path {m.group(0)!r}" for m in MACHINE_PATH.finditer(text)]
    return found


class MathMLRenderer(IPythonRenderer):
    """nbconvert's Markdown renderer with LaTeX math written as MathML instead of left for MathJax.

    nbconvert's parser finds the math (``$…$``, ``$$…$$``, ``\\(…\\)``, environments) in
    Markdown cells and in Markdown outputs alike; only the rendering of what it found changes.
    """

    def _mathml(self, latex: str, display: str) -> str:
        try:
            return latex_to_mathml(latex, display=display)
        except Exception as err:  # latex2mathml raises several unrelated types
            raise ValueError(f"cannot convert LaTeX to MathML: {latex!r} ({err})") from err

    def inline_math(self, body: str) -> str:
        return self._mathml(body, "inline")

    def block_math(self, body: str) -> str:
        return self._mathml(body, "block")

    def latex_environment(self, name: str, body: str) -> str:
        return self._mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", "block")


class ReportExporter(HTMLExporter):
    """A self-contained page for readers: outputs and Markdown only, MathML, no network."""

    def __init__(self, **kw: Any) -> None:
        loaders = [DictLoader({_OFFLINE_TEMPLATE: _OFFLINE_TEMPLATE_SOURCE})]
        super().__init__(extra_loaders=loaders, **kw)
        self.template_file = _OFFLINE_TEMPLATE
        self.exclude_input = True
        self.exclude_input_prompt = True
        self.exclude_output_prompt = True
        # Figures are PNG outputs (already inline base64); embed_images also inlines any image
        # a markdown cell references, so the page is one file.
        self.embed_images = True

    @pass_context
    def markdown2html(self, context: Any, source: str) -> str:
        # HTMLExporter.markdown2html with the renderer swapped for MathMLRenderer.
        cell = context.get("cell", {})
        renderer = MathMLRenderer(
            escape=False,
            attachments=cell.get("attachments", {}),
            embed_images=self.embed_images,
            path=context.get("resources", {}).get("metadata", {}).get("path", ""),
            anchor_link_text=self.anchor_link_text,
            exclude_anchor_links=self.exclude_anchor_links,
            **self.lexer_options,
        )
        return MarkdownWithMath(renderer=renderer).render(source)


def export_html(executed: Path, html_path: Path) -> Path:
    """Write the reader's page of an executed notebook (see :class:`ReportExporter`)."""
    nb = nbformat.read(executed, as_version=4)
    body, _ = ReportExporter().from_notebook_node(
        nb, resources={"metadata": {"name": Path(html_path).stem}}
    )
    tmp = Path(html_path).with_name(Path(html_path).name + ".tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(html_path)
    return Path(html_path)


def _relative_to(value: Any, base: Path) -> Any:
    """``value`` with every absolute path (a ``Path``, or a ``str`` starting with the filesystem
    root) rewritten relative to ``base``; containers are walked."""
    if isinstance(value, Path) or (isinstance(value, str) and os.path.isabs(value)):
        path = Path(value)
        return Path(os.path.relpath(path, base)) if path.is_absolute() else path
    if isinstance(value, Mapping):
        return {k: _relative_to(v, base) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_relative_to(v, base) for v in value]
    return value


def _record_relative_paths(executed: Path, cwd: Path) -> None:
    """Make ``executed`` name no directory of the machine that rendered it: the notebook and
    output paths papermill records, and ``cwd`` in any output (a warning naming a file of the
    repository's .venv, say), become relative to ``cwd``, the kernel's working directory."""
    nb = nbformat.read(executed, as_version=4)
    record = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if record.get(key):
            record[key] = str(_relative_to(Path(record[key]).absolute(), cwd))
    prefix = str(cwd).rstrip(os.sep) + os.sep
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if isinstance(output.get("text"), str):
                output["text"] = output["text"].replace(prefix, "")
            data = output.get("data", {})
            for mime in ("text/plain", "text/markdown", "text/html"):
                if isinstance(data.get(mime), str):
                    data[mime] = data[mime].replace(prefix, "")
    nbformat.write(nb, executed)


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

    cwd = Path(cwd if cwd is not None else repo_root()).absolute()
    try:
        pm.execute_notebook(
            str(notebook),
            str(executed),
            # The kernel runs in cwd, so paths relative to it mean the same there, and the
            # injected-parameters cell names no directory of this machine. papermill writes
            # parameters via repr: a Path would come out as "PosixPath(...)" and fail.
            parameters=plain_json(_relative_to(parameters, cwd), what="notebook parameters"),
            kernel_name=kernel_name,
            cwd=str(cwd),
            progress_bar=False,
            log_output=False,
        )
    except PapermillExecutionError as err:
        raise NotebookExecutionError(notebook, executed, err) from err
    _record_relative_paths(executed, cwd)
    return export_html(executed, html_path)


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

