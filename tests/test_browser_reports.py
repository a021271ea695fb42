"""Real-browser test of the reports: Debian Chromium (``/usr/bin/chromium``, never a
downloaded browser) headless, with the network off, opens ``index.html`` and pages over
file:// and finds no console errors, no failed or remote requests, every figure decoded,
and a page that is not blank. Screenshots go to ``test-output/browser/report_*.png``.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, browser_missing

SHOTS = Path(__file__).resolve().parents[1] / "test-output" / "browser"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser_page():
    why = browser_missing()
    if why:
        pytest.skip(why)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=True)
            ctx.set_offline(True)
            log: dict[str, list[str]] = {"console": [], "failed": [], "remote": [], "requests": []}

            def route(r):
                url = r.request.url
                if url.startswith(("file://", "data:")):
                    r.continue_()
                else:
                    log["remote"].append(url)
                    r.abort()

            ctx.route("**/*", route)
            page = ctx.new_page()
            page.on("console", lambda m: m.type in ("error", "warning") and log["console"].append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: log["console"].append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: log["failed"].append(f"{r.url[:120]}: {r.failure}"))
            page.on("request", lambda r: log["requests"].append(r.url[:120]))
            yield page, log
        finally:
            browser.close()


def _visit(page, log, path: Path, shot: str) -> Path:
    for v in log.values():
        v.clear()
    page.goto(path.as_uri(), wait_until="load", timeout=60_000)
    page.wait_for_load_state("networkidle", timeout=30_000)
    broken = page.evaluate("() => Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                           ".map(i => i.alt || i.src.slice(0, 40))")
    assert broken == [], f"{path.name}: figures that did not decode: {broken}"
    # fits a 1280 px window: nothing scrolls the page sideways (wide tables scroll in their own box)
    width = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], f"{path.name}: {width[0]} px wide in a {width[1]} px window"
    SHOTS.mkdir(parents=True, exist_ok=True)
    out = SHOTS / shot
    page.screenshot(path=str(out), full_page=True)
    assert log["console"] == [], log["console"]
    assert log["failed"] == [], log["failed"]
    assert log["remote"] == [], log["remote"]
    assert all(u.startswith(("file://", "data:")) for u in log["requests"]), log["requests"]
    _assert_not_blank(out)
    return out


def _assert_not_blank(png: Path) -> None:
    from PIL import Image, ImageStat
    with Image.open(png) as im:
        gray = im.convert("L")
        w, h = gray.size
        assert w >= 800 and h >= 600, (w, h)
        std = ImageStat.Stat(gray).stddev[0]
        colors = len(im.convert("RGB").getcolors(maxcolors=1 << 24) or [])
    assert std > 15 and colors > 50, f"{png.name} looks blank: stddev {std:.1f}, {colors} colours"


def test_variant_index_renders_offline(browser_page):
    from test_reports import generated
    page, log = browser_page
    g = generated("variant")
    _visit(page, log, g.index, "report_index.png")
    assert page.inner_text("h1") == "Exit Strategy Comparison"
    assert page.locator("table.comparison").count() == 1
    assert page.locator("img").count() >= 2
    # the variant links resolve to files next to the index
    hrefs = page.eval_on_selector_all("table.comparison thead a", "els => els.map(e => e.href)")
    assert [h.rsplit("/", 1)[-1] for h in hrefs] == ["liquidity_targets.html", "atr_based.html"]
    assert all(h.startswith("file://") for h in hrefs)


def test_variant_page_renders_offline(browser_page):
    from test_reports import generated
    page, log = browser_page
    g = generated("variant")
    _visit(page, log, g.folder / "atr_based.html", "report_variant.png")
    text = page.inner_text("body")
    assert "Exit Strategy Comparison: atr_based" in text and "Equity against buy-and-hold" in text
    assert "pages.setup()" not in text  # code hidden
    assert page.locator("img").count() >= 3
    p_values = page.locator(".mf-bootstrap")   # the comparison's bootstrap p-values, on screen
    assert p_values.count() == 1 and p_values.is_visible() and "p = " in p_values.inner_text()


def test_failed_variant_index_and_partial_page_render_offline(browser_page):
    from test_reports import generated
    page, log = browser_page
    g = generated("evil")
    _visit(page, log, g.index, "report_failed_index.png")
    failed = page.inner_text("#failed")
    assert "broken" in failed and "DataError" in failed
    assert page.locator("#failed a[href='broken.ipynb']").count() == 1
    assert page.evaluate("() => document.querySelectorAll('script').length") == 0
    assert "../evil<script>" in page.inner_text("table.comparison")  # shown as text, escaped in the source
    _visit(page, log, g.folder / "broken.html", "report_failed_page.png")
    assert "DataError" in page.inner_text("body")


def test_optimization_and_walk_forward_indexes_render_offline(browser_page):
    from test_reports import generated
    page, log = browser_page
    _visit(page, log, generated("optimization").index, "report_optimization_index.png")
    assert page.locator("img").count() >= 2
    _assert_banner(page, "Indistinguishable from the luck of 16 trials")
    _visit(page, log, generated("walk_forward").index, "report_walk_forward_index.png")
    assert page.locator("img").count() == 1
    _assert_banner(page, "out-of-sample Sharpe ratio")


def _assert_banner(page, headline: str) -> None:
    """The honesty banner is on screen near the top of the page, with its verdict."""
    banner = page.locator(".mf-honesty")
    assert banner.count() == 1 and banner.is_visible()
    assert headline in banner.inner_text()
    assert page.evaluate("() => document.querySelector('.mf-honesty').getBoundingClientRect().top") < 900


def test_best_run_pages_carry_the_verdict_on_screen(browser_page):
    from test_reports import generated
    page, log = browser_page
    _visit(page, log, generated("optimization").folder / "best_run.html", "report_best_run_luck.png")
    _assert_banner(page, "Indistinguishable from the luck of 16 trials")
    _visit(page, log, generated("survives").folder / "best_run.html", "report_best_run_survives.png")
    _assert_banner(page, "Survives selection")



def test_single_run_tear_sheet_renders_offline(browser_page):
    from test_reports import generated
    page, log = browser_page
    g = generated("single")
    _visit(page, log, g.index, "report_single_run.png")
    assert page.inner_text("h1") == "ict_smc_strategy: tear sheet"
    assert page.locator("img").count() == 4
    for section in ("Costs", "Equity against buy-and-hold", "Worst drawdowns", "Trade statistics", "Parameters"):
        assert page.locator("h2", has_text=section).count() == 1, section
    costs = page.locator(".mf-costs").first
    assert costs.is_visible() and costs.inner_text().startswith("costs: commission 0.002 % per side (paid ")
    assert page.locator("table.mf-drawdowns tbody tr").count() == 5
    # the trades CSV link resolves to the file beside the page
    href = page.get_attribute("a[download]", "href")
    assert href.endswith("_trades.csv") and (g.folder / href).is_file()


def test_optimization_and_walk_forward_pages_render_offline(browser_page):
    """The notebook pages of an optimization and a walk-forward (the indexes are above):
    with the index, the variant, best-run and single-run pages, every page type."""
    from test_reports import generated
    page, log = browser_page
    _visit(page, log, generated("optimization").folder / "optimization.html", "report_optimization.png")
    _assert_banner(page, "Indistinguishable from the luck of 16 trials")
    assert page.locator("img").count() >= 4 and "costs: commission 0.002 % per side" in page.inner_text("body")
    _visit(page, log, generated("walk_forward").folder / "walk_forward.html", "report_walk_forward.png")
    _assert_banner(page, "out-of-sample Sharpe ratio")
    assert "Per-window results" in page.inner_text("body")


def test_portfolio_page_renders_offline(browser_page):
    from test_reports import generated
    page, log = browser_page
    g = generated("portfolio")
    _visit(page, log, g.index, "report_portfolio.png")
    assert page.inner_text("h1") == "sp500_20_portfolio: portfolio"
    assert page.locator("img").count() == 3   # equity, contributions, correlation heatmap
    assert page.locator("table.mf-breakdown tbody tr").count() == len(g.cli["symbols"]) == 20
    assert page.locator(".mf-costs").first.inner_text().startswith("costs: ")
    href = page.get_attribute("a[download]", "href")
    assert href.endswith("_trades.csv") and (g.folder / href).is_file()


def test_basket_reports_render_offline(browser_page):
    # README "Portfolios": the reports of the meta configs over a basket, a portfolio page per run
    from test_reports import generated
    page, log = browser_page
    g = generated("basket_optimization")
    _visit(page, log, g.index, "report_basket_optimization_index.png")
    assert "Best combination per instrument" in page.inner_text("body")
    _visit(page, log, g.folder / "best_run.html", "report_basket_best_run.png")
    assert page.locator(".mf-honesty").count() == 1 and "Per instrument" in page.inner_text("body")
    _visit(page, log, generated("basket_variants").folder / "drawdown_halt.html", "report_basket_variant.png")
    assert "Bootstrap p-values" in page.inner_text("body")
    _visit(page, log, generated("basket_walk_forward").index, "report_basket_walk_forward_index.png")


def test_a_long_name_scrolls_inside_its_section_not_the_index(browser_page, tmp_path):
    """hunt27 F6: a 300-character variant name widened index.html to 3,155 px in a 1,280 px
    window; a table wider than its section scrolls in its own box."""
    from types import SimpleNamespace as NS

    from metaflow_nb.reporting.index import CSS, pages_section
    page, log = browser_page
    name = "L" * 300
    p = NS(name=name, title=name, kind="variant", run=name, ok=True, html=f"r/{name}.html", notebook="r/x.ipynb")
    doc = tmp_path / "index.html"
    doc.write_text(f"<!doctype html><html><head><meta charset='utf-8'><style>{CSS}</style></head><body><main>"
                   f"{pages_section([p], {})}</main></body></html>", encoding="utf-8")
    page.goto(doc.as_uri(), wait_until="load")
    width = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], f"{width[0]} px wide in a {width[1]} px window"
    box = page.evaluate("() => { const s = document.querySelector('section'); return [s.scrollWidth, s.clientWidth] }")
    assert box[0] > box[1]   # the table is wider than its section: it scrolls there
