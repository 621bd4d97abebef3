"""The view page in a real browser: the system's headless Chromium, driven by Playwright, JavaScript on.

Playwright never downloads a browser here: it launches the `chromium` on PATH (apt-get install -y
chromium), so the test runs offline; it skips only when that browser is absent.
"""

from __future__ import annotations

import shutil

import pytest

from synthdistill import view
from tests.view.view_fixtures import make_view_run, page_records

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def page_path(tmp_path_factory):
    run = make_view_run(tmp_path_factory.mktemp("view-browser"))
    return view.run(run.run_dir)


@pytest.fixture()
def page(page_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.problems = []
        tab.on("console", lambda message: tab.problems.append(f"console {message.type}: {message.text}"))
        tab.on("pageerror", lambda error: tab.problems.append(f"error: {error}"))
        tab.on("request", lambda request: request.url.startswith("file:") or tab.problems.append(request.url))
        tab.goto(page_path.as_uri())
        yield tab
        browser.close()


def test_the_page_runs_without_errors_or_network(page):
    assert page.get_attribute("body", "data-view-ready") == "yes"
    assert page.problems == []
    assert page.locator("#match-count").inner_text() == "5 of 5 records match"
    assert page.locator("#record-list tbody tr").count() == 5
    assert page.locator("svg.histogram").count() == 2  # confidence and entropy, drawn by the script


def test_filter_by_status_then_open_a_record_and_hover_a_token(page, page_path):
    page.select_option("#f-status", "dropped")
    rows = page.locator("#record-list tbody tr")
    assert rows.count() == 2 and page.locator("#match-count").inner_text() == "2 of 5 records match"
    assert {rows.nth(i).get_attribute("data-status") for i in range(2)} == {"dropped"}

    rows.first.click()
    detail = page.locator("#record-detail")
    assert detail.is_visible()
    record = {r["id"]: r for r in page_records(page_path.read_text())}[rows.first.get_attribute("data-id")]
    assert detail.locator("h3").inner_text() == "audit-demo · dropped · finished: truncated"
    tokens = detail.locator("#answer-tokens .tok")
    assert tokens.count() == len(record["tokens"]) == 9
    assert [tokens.nth(i).inner_text() for i in range(3)] == [t[0] for t in record["tokens"][:3]]
    # the second token has p = exp(-0.25) = 0.779: coloured by it, its alternatives on hover
    assert tokens.nth(1).get_attribute("data-p") == "0.779"
    tokens.nth(1).hover()
    tip = page.locator("#tooltip")
    assert tip.is_visible()
    assert tip.inner_text().splitlines() == [
        f'sampled "{record["tokens"][1][0]}"  p=0.779  entropy={record["tokens"][1][2]:.2f}',
        f'  "{record["tokens"][1][0]}"  0.779',
        '  "alt1"  0.287',
        '  "alt2"  0.105',
    ]
    assert page.problems == []


def test_search_and_length_filters_and_pages(page):
    page.fill("#f-search", "refrigerator")
    assert page.locator("#match-count").inner_text() == "1 of 5 records match"
    assert "refrigerator" in page.locator("#record-list tbody tr").first.inner_text()
    page.fill("#f-search", "")
    page.fill("#f-max", "5")  # the kept answers are 7, 4 and 4 tokens long; the cut-off ones 9
    assert page.locator("#match-count").inner_text() == "2 of 5 records match"
    assert page.locator("#page-label").inner_text() == "page 1 of 1"
    assert page.locator("#next").is_disabled()
