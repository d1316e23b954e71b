"""The arithmetic and conditional pages in a real `streamlit run`, driven by headless Chromium:
uploads through the file input, the style-transfer strip, the export download, the scale slider.

Screenshots land in tests/artifacts/conditional-*.png and arithmetic-*.png. The pages are opened by
URL (/conditional, /arithmetic) on a server of this module's own, before any session opens "/":
that works in Streamlit's legacy multipage mode even while app.py does not list the pages yet.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from streamlit_server import ARTIFACTS, wait_until_idle
from streamlit_server import open_page as open_app_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]
EXCEPTION = '[data-testid="stException"]'


def expect(locator):
    from playwright.sync_api import expect as playwright_expect  # imported late, like sync_playwright

    return playwright_expect(locator)


def open_page(browser, url: str, title: str, **context):
    return open_app_page(browser, url, title, height=2000, **context)


def image_src(page, caption: str) -> str:
    figure = page.locator('[data-testid="stImage"]', has_text=caption)
    figure.wait_for(timeout=30_000)
    return figure.locator("img").evaluate("e => e.src")


def digit_on_paper() -> bytes:
    """A 64×64 PNG of a dark 0 on white, drawn like a photographed digit would be."""
    canvas = np.full((64, 64), 255, dtype=np.uint8)
    yy, xx = np.mgrid[:64, :64]
    ring = np.abs(np.hypot((xx - 32) / 14, (yy - 32) / 22) - 1) < 0.25
    canvas[ring] = 20
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    return buf.getvalue()


def test_conditional_page_uploads_and_export(app_url, browser, tmp_path):
    page = open_page(browser, f"{app_url}/conditional?model=file:mnist-cvae", "Conditional generation",
                     accept_downloads=True)
    image_src(page, "each column is one z")
    image_src(page, "the same style across all classes")
    page.screenshot(path=str(ARTIFACTS / "conditional-cvae.png"), full_page=True)

    page.get_by_text("your own picture").click()
    wait_until_idle(page)
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="A picture").locator("input[type=file]")
    uploader.set_input_files(files=[{"name": "not-a-picture.png", "mimeType": "image/png",
                                     "buffer": b"this is a text file, not a picture"}])
    error = page.get_by_test_id("stAlert").filter(has_text="Could not use not-a-picture.png")
    error.wait_for(timeout=30_000)
    wait_until_idle(page)
    assert "not an image" in error.inner_text()
    assert page.locator(EXCEPTION).count() == 0, "a bad upload gives a message, not a traceback"
    assert page.locator('[data-testid="stImage"]', has_text="same style").count() == 0
    page.screenshot(path=str(ARTIFACTS / "conditional-bad-upload.png"), full_page=True)

    uploader.set_input_files(files=[{"name": "zero.png", "mimeType": "image/png", "buffer": digit_on_paper()}])
    page.locator('[data-testid="stImage"]', has_text="zero.png").wait_for(timeout=30_000)
    wait_until_idle(page)
    assert page.locator('[data-testid="stImage"]', has_text="the same style across all classes").count() == 1
    assert page.get_by_test_id("stAlert").filter(has_text="Could not use").count() == 0
    expect(page.get_by_text("Read as 0")).to_have_count(1)  # the CVAE reads the drawn ring as a 0
    assert page.locator(EXCEPTION).count() == 0
    page.screenshot(path=str(ARTIFACTS / "conditional-upload.png"), full_page=True)

    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Download 1,000 samples (npz)").click()
    path = tmp_path / "samples.npz"
    download.value.save_as(path)
    with np.load(path, allow_pickle=False) as f:
        assert f["images"].shape == (1000, 28, 28) and f["labels"].tolist() == np.repeat(np.arange(10), 100).tolist()
    page.close()


def test_conditional_page_explains_itself_to_a_plain_vae(app_url, browser):
    page = open_page(browser, f"{app_url}/conditional?model=file:digits-vae", "Conditional generation")
    expect(page.get_by_text("p(x | z, y)")).to_have_count(1)
    expect(page.locator("button", has_text="Train a conditional model on digits")).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "conditional-plain-vae.png"), full_page=True)
    page.close()


def test_arithmetic_scale_slider_changes_the_result(app_url, browser):
    page = open_page(browser, f"{app_url}/arithmetic?model=file:shapes-betavae", "Latent arithmetic")
    before = image_src(page, "result:")
    page.screenshot(path=str(ARTIFACTS / "arithmetic-shapes.png"), full_page=True)
    slider = page.get_by_role("slider").first
    slider.focus()
    for _ in range(10):  # keyboard steps of 0.1: s goes from 1 towards 2
        slider.press("ArrowRight")
    page.wait_for_timeout(500)
    scale = float(page.get_by_test_id("stSliderThumbValue").first.inner_text())
    assert scale > 1.0
    # Each key press reruns the page; the last run draws the slider's final value.
    page.locator('[data-testid="stImage"]', has_text=f"result: decode(c + {scale:g}·(a − b))").wait_for(timeout=30_000)
    wait_until_idle(page)
    assert image_src(page, "result:") != before
    assert page.locator(EXCEPTION).count() == 0
    page.screenshot(path=str(ARTIFACTS / "arithmetic-shapes-scale-2.png"), full_page=True)
    page.close()
    page = open_page(browser, f"{app_url}/arithmetic?model=file:digits-vae", "Latent arithmetic")
    image_src(page, "result:")
    page.screenshot(path=str(ARTIFACTS / "arithmetic-digits.png"), full_page=True)
    page.close()
