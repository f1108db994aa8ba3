"""The report pages and the `dvc plots show` page, opened in a real headless browser (Debian's
chromium through chromium-driver, driven by Selenium; `make setup` installs them): figures load,
MathML is drawn, Vega plots draw, no LaTeX is left as text, no machine path shows and nothing is
fetched from the network."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from esrepro.report_snapshots import render_snapshot
from esrepro.reports import page_problems
from test_reports import COMMITTED_PAGES, REPO, make_dosnp_snapshot

#: The generated page template .dvc/config names (scripts/dvc_plots_template.py, run by setup).
PLOTS_TEMPLATE = REPO / ".esrepro" / "dvc-plots-template.html"

#: What the page shows a reader, gathered in the page: figures, math, headings, network use.
INSPECT = """
const firstImg = document.images[0], firstTable = document.querySelector('table');
return {
  text: document.body.innerText,
  images: [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
  maths: [...document.querySelectorAll('math')].map(m => m.getBoundingClientRect().width),
  h2: [...document.querySelectorAll('h2')].map(h => h.textContent.trim()),
  tableBeforeFigures: !!firstTable && (!firstImg ||
    !!(firstTable.compareDocumentPosition(firstImg) & Node.DOCUMENT_POSITION_FOLLOWING)),
  network: performance.getEntriesByType('resource').map(r => r.name)
    .filter(n => /^(https?|wss?):/.test(n)),
};
"""

#: Per DVC plot div: whether vega-embed drew it (a canvas with non-white pixels, or SVG marks).
PLOT_STATE = """
return [...document.querySelectorAll('body > div[id]')].map(div => {
  const canvas = div.querySelector('canvas');
  let drawn = 0;
  if (canvas && canvas.width && canvas.height) {
    const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < px.length; i += 4)
      if (px[i + 3] && (px[i] < 250 || px[i + 1] < 250 || px[i + 2] < 250)) drawn++;
  }
  drawn += div.querySelectorAll('svg.marks path, svg.marks line').length;
  return [div.id, drawn];
});
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail(
            "chromium and chromedriver not found: `make setup` installs Debian's chromium and "
            "chromium-driver"
        )
    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    # Selenium Manager would try to download a driver; Debian's is given instead.
    drv = webdriver.Chrome(options=options, service=Service(driver))
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def inspect(browser: webdriver.Chrome, page: Path) -> dict:
    browser.get(page.resolve().as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    return browser.execute_script(INSPECT)


def reader_problems(seen: dict, min_images: int = 1) -> list[str]:
    """What is wrong with a page as a reader sees it (see INSPECT)."""
    problems = page_problems(seen["text"])
    broken = [i for i, (done, w, h) in enumerate(seen["images"]) if not (done and w and h)]
    if len(seen["images"]) < min_images:
        problems.append(f"{len(seen['images'])} figures, expected at least {min_images}")
    if broken:
        problems.append(f"figures not drawn: {broken}")
    if any(width <= 0 for width in seen["maths"]):
        problems.append("MathML not drawn")
    if seen["network"]:
        problems.append(f"fetched from the network: {seen['network'][:3]}")
    return problems


@pytest.fixture(scope="module")
def fresh_dosnp_page(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    """A DOSnp snapshot of synthetic inputs, its report rendered by render_snapshot."""
    folder = tmp_path_factory.mktemp("snapshot")
    inputs = make_dosnp_snapshot(folder)
    return render_snapshot("dosnp", folder, root=repo_root, inputs=inputs)


def test_fresh_report_reads_in_a_browser(browser: webdriver.Chrome, fresh_dosnp_page: Path) -> None:
    seen = inspect(browser, fresh_dosnp_page)
    assert reader_problems(seen, min_images=5) == []
    assert len(seen["maths"]) >= 3
    # "Paper vs ours" comes first, its table before any figure.
    assert seen["h2"][0].startswith("Paper vs ours")  # then the anchor link
    assert seen["tableBeforeFigures"]
    assert "matplotlib" not in seen["text"]  # no code
    # The static page says the same, and the snapshot's provenance knows the new page.
    assert page_problems(fresh_dosnp_page.read_text(encoding="utf-8")) == []
    provenance = (fresh_dosnp_page.parent / "provenance.json").read_text(encoding="utf-8")
    assert '"dosnp.html"' in provenance and '"report_rerendered"' in provenance


@pytest.mark.parametrize("page", COMMITTED_PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_committed_report_reads_in_a_browser(browser: webdriver.Chrome, page: Path) -> None:
    problems = reader_problems(inspect(browser, page), min_images=3)
    assert problems == [], f"{page.relative_to(REPO)}: {problems[:6]}"


def test_dvc_plots_show_draws_offline(
    browser: webdriver.Chrome, tmp_path: Path, repo_root: Path
) -> None:
    if not PLOTS_TEMPLATE.is_file():
        pytest.fail(f"{PLOTS_TEMPLATE.relative_to(REPO)} missing: `make setup` generates it")
    subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "-o", str(tmp_path)],
        cwd=repo_root, check=True, capture_output=True, text=True,
    )
    page = tmp_path / "index.html"
    text = page.read_text(encoding="utf-8")
    assert "<!-- vega@" in text, "dvc plots show did not use the offline template (.dvc/config)"
    assert "cdn." not in text
    browser.get(page.as_uri())
    try:  # vega-embed draws asynchronously
        WebDriverWait(browser, 30).until(
            lambda d: (s := d.execute_script(PLOT_STATE)) and all(n > 0 for _, n in s)
        )
    except TimeoutException:
        pass
    state = browser.execute_script(PLOT_STATE)
    # DOSnp and ALIGNN-DOS learning curves (dvc.yaml plots), each drawn
    assert len(state) >= 2 and all(n > 0 for _, n in state), state
    assert browser.execute_script(INSPECT)["network"] == []
