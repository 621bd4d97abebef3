"""The README's screenshot of a run's page: headless Chromium (the system's, through Playwright).

    .venv/bin/python scripts/view_screenshot.py examples/quickstart/outputs/quickstart/view.html docs/view-quickstart.png

It opens the page, filters the records to the kept ones, opens the first, hovers one of its
tokens so the top alternatives show, and saves the funnel and records sections as a PNG
(quantised to 256 colours to stay small).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def screenshot(page_path: Path, output: Path, token: int = 3) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900}, device_scale_factor=1)
        page.goto(page_path.resolve().as_uri())
        page.wait_for_selector("body[data-view-ready=yes]")
        page.select_option("#f-status", "kept")
        page.fill("#f-min", "80")
        page.locator("#record-list tbody tr").first.click()
        page.locator("#answer-tokens .tok").nth(token).hover()
        bottom = page.evaluate("document.getElementById('record-detail').getBoundingClientRect().bottom + scrollY")
        page.screenshot(path=str(output), full_page=True, clip={"x": 0, "y": 0, "width": 1200, "height": bottom + 130})
        browser.close()
    image = Image.open(output).convert("RGB").quantize(colors=256)
    image.save(output, optimize=True)


if __name__ == "__main__":
    screenshot(Path(sys.argv[1]), Path(sys.argv[2]))
