"""Write the HTML template `dvc plots show` fills (`.dvc/config`: plots.html_template), with
Vega, Vega-Lite and Vega-Embed inlined, so the learning curves draw without network access.

DVC's own page loads these three scripts from a CDN and is blank offline. The scripts are the
versions DVC's page names (dvc_render's VegaRenderer), fetched with `npm pack` and checked against
the sha512 pinned here; the page is generated at setup (`make setup`), not committed (~1.5 MB of
third-party JavaScript). The template omits DVC's `{scripts}` placeholder (the CDN tags) and keeps
`{plot_divs}` and `{refresh_tag}`.

    python scripts/dvc_plots_template.py [OUTPUT]    # default: .esrepro/dvc-plots-template.html
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Where .dvc/config points (html_template is read relative to .dvc/).
DEFAULT_OUTPUT = ROOT / ".esrepro" / "dvc-plots-template.html"

#: (npm package spec, file in its tarball, sha512 of the tarball as npm's "integrity").
SCRIPTS = (
    (
        "vega@5.20.2",
        "package/build/vega.min.js",
        "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw==",
    ),
    (
        "vega-lite@5.2.0",
        "package/build/vega-lite.min.js",
        "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw==",
    ),
    (
        "vega-embed@6.18.2",
        "package/build/vega-embed.min.js",
        "sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg==",
    ),
)

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {{refresh_tag}}
    <title>DVC Plot</title>
    <!-- {pins}, inlined (scripts/dvc_plots_template.py) -->
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def integrity(data: bytes) -> str:
    """npm's integrity string of ``data`` (sha512, base64)."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def fetch_script(spec: str, member: str, pinned: str, workdir: Path) -> bytes:
    """``member`` of the npm tarball of ``spec``, after checking the tarball against ``pinned``."""
    out = subprocess.run(
        ["npm", "pack", spec, "--json", "--pack-destination", str(workdir)],
        check=True, capture_output=True, text=True, cwd=workdir,
    )
    tarball = workdir / json.loads(out.stdout)[0]["filename"]
    got = integrity(tarball.read_bytes())
    if got != pinned:
        raise SystemExit(f"{spec}: tarball integrity {got} differs from the pinned {pinned}")
    with tarfile.open(tarball) as tar:
        extracted = tar.extractfile(member)
        if extracted is None:
            raise SystemExit(f"{spec}: no {member} in the tarball")
        return extracted.read()


def page(scripts: list[bytes]) -> str:
    """The template: each script as a base64 data URL, which no content of it can break out of
    (a literal "</script>" or "{plot_divs}" in the JavaScript would otherwise)."""
    tags = "\n".join(
        f'    <script src="data:text/javascript;base64,{base64.b64encode(s).decode()}"></script>'
        for s in scripts
    )
    pins = ", ".join(spec for spec, _, _ in SCRIPTS)
    return PAGE.format(pins=pins, scripts=tags)


def main(argv: list[str]) -> int:
    output = Path(argv[0]) if argv else DEFAULT_OUTPUT
    pins = ", ".join(spec for spec, _, _ in SCRIPTS)
    if output.is_file() and f"<!-- {pins}," in output.read_text(encoding="utf-8"):
        return 0  # up to date
    with tempfile.TemporaryDirectory() as tmp:
        scripts = [fetch_script(spec, member, pin, Path(tmp)) for spec, member, pin in SCRIPTS]
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".tmp")
    partial.write_text(page(scripts), encoding="utf-8")
    partial.replace(output)
    print(f"wrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output} ({pins})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
