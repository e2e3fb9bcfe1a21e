"""Every HTML report genembed writes opens in a real browser (headless Chromium through Selenium).

Checked on each page: it finishes loading, has a title and a heading, has a real size on screen, every image
decodes, the console shows no errors, nothing is fetched over the network (the pages are self-contained), and
clicking a header of a sortable table sorts it (so the inline script ran). Needs the Debian packages ``chromium``
and ``chromium-driver`` (``make browser`` installs them as root); without them these tests are skipped.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from helpers import browser_missing

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, built_index, prepared_slice, ecoli_slice, tiny_bert) -> Path:
    """Every report genembed writes, made from the 200-kb E. coli slice into one folder tree."""
    from genembed.reports.clusters import ClusterSettings, cluster_report
    from genembed.data.layout import GenomeInputs
    from genembed.reports.promoters import PromoterSettings, promoter_report

    root = tmp_path_factory.mktemp("rendered_reports")
    inputs = [GenomeInputs("ecoli", prepared_slice, ecoli_slice[1], built_index["windows"], built_index["shards"])]
    twice = inputs + [GenomeInputs("ecoli_again", prepared_slice, None, built_index["windows"], built_index["shards"])]
    cluster_report(twice, root / "clusters", ClusterSettings(k=4, umap_sample=150))  # two genomes: the genome section
    from genembed.reports.compare import compare_genomes

    compare_genomes(twice, root / "compare")
    promoter_report(inputs, root / "promoters", PromoterSettings(upstream=100, downstream=20), stride=1000)
    from genembed.reports.evaluate import EvalSettings, evaluate_model
    from helpers import kmer_plan

    plan = kmer_plan(tiny_bert, 500, "auto")
    evaluate_model({"ecoli": prepared_slice}, replace(plan, windows=replace(plan.windows, stride=250)), root / "evaluate",
                   EvalSettings(windows=60, bootstrap=100, divergence_queries=50, loci_depth=50), promoter_dir=root / "promoters")
    return root


def _short(text: str) -> str:
    text = re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=!]{24,}", lambda m: m.group(0)[:40] + "...", text)
    return text if len(text) <= 300 else text[:300] + "..."


_IMAGES = "return [...document.images].map((im,i)=>({i:i, alt:im.alt, complete:im.complete, w:im.naturalWidth}))"
_SORTABLE = """return [...document.querySelectorAll('table.sortable')].map(t=>t.tBodies.length ? t.tBodies[0].rows.length : 0)"""
_COLUMN = "return [...document.querySelectorAll('table.sortable')[arguments[0]].tBodies[0].rows].map(r=>r.cells[arguments[1]].innerText)"


def _as_numbers(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def _sort_problems(driver, t: int) -> list[str]:
    """Click a header (twice) of sortable table ``t``: the rows must come out sorted, then reversed."""
    from selenium.webdriver.common.by import By

    headers = driver.find_elements(By.CSS_SELECTOR, "table.sortable")[t].find_elements(By.CSS_SELECTOR, "thead th")
    for col, th in enumerate(headers):
        before = driver.execute_script(_COLUMN, t, col)
        if len(set(before)) < 2:
            continue
        th.click()
        first = driver.execute_script(_COLUMN, t, col)
        th.click()
        second = driver.execute_script(_COLUMN, t, col)
        name = th.text or f"column {col + 1}"
        if first == second or second != first[::-1]:
            return [f"sortable table {t + 1}: clicking header {name!r} does not reorder the rows ({before} -> {first} -> {second})"]
        numbers = _as_numbers(first)
        if numbers is not None and numbers != sorted(numbers):
            return [f"sortable table {t + 1}: clicking header {name!r} leaves the rows unsorted ({first})"]
        return []
    return []  # no column with two different values: nothing a click could reorder


def page_problems(driver, path: str | Path) -> list[str]:
    """Open ``path`` in ``driver`` and return what is wrong with the page as rendered (empty: nothing)."""
    path = Path(path).resolve()
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(path.as_uri())
    problems = []
    import time

    deadline = time.monotonic() + 30  # a large page (the promoter report inlines igv.js) may still be parsing
    while driver.execute_script("return document.readyState") != "complete" and time.monotonic() < deadline:
        time.sleep(0.2)
    state = driver.execute_script("return document.readyState")
    if state != "complete":
        problems.append(f"document.readyState is {state!r}, not 'complete'")
    if not driver.title.strip():
        problems.append("the page has no title")
    h1 = driver.execute_script("const h=document.querySelector('h1'); return h ? h.innerText : null")
    if not (h1 or "").strip():
        problems.append("the page has no h1 heading")
    width, height = driver.execute_script("const r=document.body.getBoundingClientRect(); return [r.width, r.height]")
    if width < 200 or height < 200:
        problems.append(f"the body renders at only {width:.0f} x {height:.0f} px")
    images = driver.execute_script(_IMAGES)
    if not images:
        problems.append("the page has no images")
    for im in images:
        if not (im["complete"] and im["w"] > 0):
            problems.append(f"image {im['i'] + 1} (alt {im['alt']!r}) is broken: complete={im['complete']}, naturalWidth={im['w']}")
    for entry in driver.get_log("browser"):
        if entry.get("level") == "SEVERE":
            problems.append(f"console error: {_short(entry.get('message', ''))}")
    fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e=>e.name)")
    for url in fetched:
        if re.match(r"(https?|wss?|ftp):", url, re.I):
            problems.append(f"the page requests {_short(url)} (reports must be self-contained)")
    for t, rows in enumerate(driver.execute_script(_SORTABLE)):
        if rows >= 2:
            problems.extend(_sort_problems(driver, t))
    return problems


def test_every_html_report_renders_in_chromium_with_all_images_loaded(browser, report_dir):
    pages = sorted(report_dir.rglob("*.html"))
    assert {"clusters.html", "promoters.html", "evaluate.html", "compare.html"} <= {p.name for p in pages}
    found = {p.relative_to(report_dir).as_posix(): page_problems(browser, p) for p in pages}
    broken = {page: problems for page, problems in found.items() if problems}
    assert not broken, "\n".join(f"{page}: {problem}" for page, problems in broken.items() for problem in problems)


@pytest.mark.parametrize("corrupt", [
    pytest.param(lambda html: html.replace("base64,iVBORw0KGgo", "base64,AAAAAAAAAAA", 1), id="bytes-that-are-not-a-png"),
    pytest.param(lambda html: re.sub(r"(base64,[A-Za-z0-9+/]{200})[A-Za-z0-9+/]{4}", r"\1!!!!", html, count=1),
                 id="invalid-base64"),
])
def test_a_report_with_a_corrupted_image_is_reported_as_broken(browser, report_dir, tmp_path, corrupt):
    original = (report_dir / "clusters" / "clusters.html").read_text()
    damaged = corrupt(original)
    assert damaged != original
    (tmp_path / "clusters.html").write_text(damaged)
    problems = page_problems(browser, tmp_path / "clusters.html")
    broken_images = [p for p in problems if p.startswith("image ")]
    assert len(broken_images) == 1 and broken_images[0].startswith("image 1 "), problems  # the first, and only it


def test_the_promoter_report_embeds_a_genome_browser_that_draws_its_tracks_offline(browser, report_dir):
    from selenium.webdriver.support.ui import WebDriverWait

    path = report_dir / "promoters" / "promoters.html"  # console errors and fetches: the test above, on every page
    browser.get_log("browser")
    browser.get(path.resolve().as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "const e=document.getElementById('igv-view'); return document.readyState==='complete' && e && e.dataset.ready==='1'"))
    names = [n for n in browser.execute_script("return window.genembedIgv.trackViews.map(v=>v.track.name)") if n]
    for wanted in ("+ strand promoter probability", "- strand promoter probability", "predicted promoters", "genes",
                   "known starts"):
        assert any(n.startswith(wanted) for n in names), names
    assert browser.execute_script("return document.getElementById('igv-view').shadowRoot.querySelectorAll('canvas').length") > 5
    buttons = browser.find_elements("css selector", "button.igv-locus")
    assert len(buttons) >= 2
    target = buttons[1].get_attribute("data-locus").split(":")[0] + ":"
    browser.execute_script("arguments[0].scrollIntoView(); arguments[0].click()", buttons[1])  # buttons move the view
    current = "const c=window.genembedIgv.currentLoci(); return Array.isArray(c) ? c[0] : c"  # igv 3.1: one string
    WebDriverWait(browser, 10).until(lambda d: str(d.execute_script(current)).startswith(target))
    assert not [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e=>e.name)")
    assert not [u for u in fetched if re.match(r"(https?|wss?|ftp):", u, re.I)]
