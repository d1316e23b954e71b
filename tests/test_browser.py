"""The app as a person uses it: a real `streamlit run`, driven by headless Debian Chromium.

Screenshots of every page land in tests/artifacts/ (ignored by git) to be looked at.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from streamlit_server import ARTIFACTS, open_page, wait_until_idle

from pages.ui.navigation import PAGES as NAVIGATION

pytestmark = [pytest.mark.browser, pytest.mark.slow]
# title -> URL path (the file's stem; the first page is the default, at /)
PAGES = {title: ("" if i == 0 else Path(script).stem) for i, (script, title) in enumerate(NAVIGATION)}


def decoded_image_src(page) -> str:
    figure = page.locator('[data-testid="stImage"]', has_text="decode(z)")
    figure.wait_for(timeout=30_000)
    return figure.locator("img").evaluate("e => e.src")


def test_every_page_renders_offline_and_is_screenshotted(app_url, browser):
    for name, path in PAGES.items():
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        outside = []  # a classroom may be offline: nothing may be fetched from anywhere but the app
        page.on("request", lambda r: r.url.startswith((app_url, "data:", "blob:")) or outside.append(r.url))
        page.goto(f"{app_url}/{path}")
        page.locator("h1").first.wait_for(timeout=60_000)
        wait_until_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0, f"{name} shows a traceback"
        # favicons are fetched by the browser itself, out of sight of request events: read the DOM
        outside += page.evaluate("""() => [...document.querySelectorAll('link[href], img[src], script[src]')]
            .map(e => e.href || e.src).filter(u => !u.startsWith(location.origin) && !/^(data|blob):/.test(u))""")
        assert not outside, f"{name} fetches {outside[:3]}"
        page.screenshot(path=str(ARTIFACTS / f"page-{path or 'overview'}.png"), full_page=True)
        page.close()


def test_moving_a_traversal_slider_changes_the_image(app_url, browser):
    page = open_page(browser, f"{app_url}/traversal", "Traversal")
    page.get_by_text("Decode in this browser", exact=True).click()  # the sliders that run on the server
    before = decoded_image_src(page)
    slider = page.get_by_role("slider").first
    slider.focus()
    for _ in range(20):  # 20 keyboard steps of 0.05: z moves by 1
        slider.press("ArrowRight")
    page.wait_for_function(
        "(old) => { const f = [...document.querySelectorAll('[data-testid=\"stImage\"]')]"
        ".find(e => e.innerText.includes('decode(z)')); return f && f.querySelector('img').src !== old; }",
        arg=before, timeout=30_000)
    after = decoded_image_src(page)
    assert after != before
    assert "z=" in page.url, "the current latent vector is mirrored into the shareable URL"
    wait_until_idle(page)
    page.screenshot(path=str(ARTIFACTS / "traversal-after-slider.png"), full_page=True)
    page.close()


def grid_image_src(page) -> str:
    figure = page.locator('[data-testid="stImage"]', has_text="rows:")
    figure.wait_for(timeout=30_000)
    return figure.locator("img").evaluate("e => e.src")


def test_a_grid_that_does_not_follow_the_sliders_waits_for_its_button(app_url, browser):
    page = open_page(browser, f"{app_url}/traversal", "Traversal")
    page.get_by_text("Decode in this browser", exact=True).click()  # the sliders that run on the server
    wait_until_idle(page)
    page.get_by_text("Grid follows every move", exact=True).click()
    wait_until_idle(page)
    grid, image = grid_image_src(page), decoded_image_src(page)
    slider = page.get_by_role("slider").first
    slider.focus()
    for _ in range(20):
        slider.press("ArrowRight")
    page.wait_for_function(
        "(old) => { const f = [...document.querySelectorAll('[data-testid=\"stImage\"]')]"
        ".find(e => e.innerText.includes('decode(z)')); return f && f.querySelector('img').src !== old; }",
        arg=image, timeout=30_000)
    wait_until_idle(page)
    assert grid_image_src(page) == grid, "a move redraws the picture, not the grid"
    page.get_by_role("button", name="Redraw the grid at the current z").click()
    page.wait_for_function(
        "(old) => { const f = [...document.querySelectorAll('[data-testid=\"stImage\"]')]"
        ".find(e => e.innerText.includes('rows:')); return f && f.querySelector('img').src !== old; }",
        arg=grid, timeout=30_000)
    wait_until_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(ARTIFACTS / "traversal-grid-redraw.png"), full_page=True)
    page.close()


def test_each_server_slider_redraws_the_one_picture_and_the_maps_point(app_url, browser):
    """With the grid waiting for its button, each latent slider is a fragment of its own that redraws the
    picture and the map beside it: moves on either slider change the one decode(z) picture and put the
    2-D map's "current z" where the sliders say; nothing is drawn twice, and a whole-page run (a new
    test image) still draws one of each."""
    from test_browser_links import press_slider

    page = open_page(browser, f"{app_url}/traversal?model=file:mnist-vae-2d&sample=4", "Traversal", height=1400)
    page.get_by_text("Decode in this browser", exact=True).click()
    wait_until_idle(page)
    page.get_by_text("Grid follows every move", exact=True).click()
    wait_until_idle(page)

    # the "current z" point as plotly holds it (numpy arrays travel typed: {dtype, bdata, _inputArray})
    current_z_js = ("() => { const t = document.querySelector('.js-plotly-plot').data"
                    ".find(t => (t.name || '').startsWith('current z')); const first = a => (a._inputArray || a)[0];"
                    " return [first(t.x), first(t.y)]; }")

    def current_z() -> list[float]:
        return page.evaluate(current_z_js)

    def slider_values() -> list[float]:
        return [float(page.locator('[data-testid="stSlider"]', has_text=f"z{d} ·").get_by_role("slider")
                      .get_attribute("aria-valuetext")) for d in (0, 1)]

    seen = [decoded_image_src(page)]
    for label, key in (("z0 ·", "ArrowRight"), ("z1 ·", "ArrowLeft"), ("z0 ·", "ArrowLeft")):
        press_slider(page, label, key, 2)
        page.wait_for_function(f"(v) => {{ const z = ({current_z_js})(); return Math.abs(z[0] - v[0]) < 1e-3 "
                               "&& Math.abs(z[1] - v[1]) < 1e-3; }", arg=slider_values(), timeout=30_000)
        seen.append(decoded_image_src(page))
        assert page.locator('[data-testid="stImage"]', has_text="decode(z)").count() == 1
        assert page.locator(".js-plotly-plot").count() == 1
    assert len(set(seen)) == len(seen), "every move brought a new picture"
    assert current_z() == pytest.approx(slider_values(), abs=1e-3)
    field = page.locator('[data-testid="stNumberInput"]', has_text="Test image #").locator("input").first
    field.fill("9")
    field.press("Enter")
    page.wait_for_function("() => new URLSearchParams(location.search).get('sample') === '9'", timeout=30_000)
    wait_until_idle(page)
    assert decoded_image_src(page) != seen[-1]
    assert page.locator('[data-testid="stImage"]', has_text="decode(z)").count() == 1
    assert page.locator(".js-plotly-plot").count() == 1 and current_z() == pytest.approx(slider_values(), abs=1e-3)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(ARTIFACTS / "traversal-server-sliders-2d.png"), full_page=True)
    page.close()


def test_a_corrupt_upload_shows_a_message_and_keeps_the_model(app_url, browser, tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    page = open_page(browser, app_url, "Overview")
    page.get_by_text("Upload a model").click()
    page.locator('[data-testid="stSidebar"] input[type="file"]').set_input_files(str(corrupt))
    page.get_by_role("button", name="Open upload").click()
    page.get_by_text("Could not open the upload").wait_for(timeout=30_000)
    wait_until_idle(page)
    assert "not a safetensors checkpoint" in page.locator('[data-testid="stSidebar"]').inner_text()
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator("h1", has_text="Overview").is_visible(), "the page still shows the current model"
    page.screenshot(path=str(ARTIFACTS / "upload-corrupt.png"), full_page=True)
    page.close()


def test_traversal_downloads_are_built_on_click(app_url, browser, tmp_path):
    from PIL import Image

    page = open_page(browser, f"{app_url}/traversal", "Traversal", accept_downloads=True)
    wait_until_idle(page)
    for name, suffix in (("Download animation (GIF)", "gif"), ("Download grid (PNG)", "png")):
        with page.expect_download(timeout=60_000) as download:
            page.get_by_role("button", name=name).click()
        path = tmp_path / f"traversal.{suffix}"
        download.value.save_as(path)
        with Image.open(path) as picture:
            assert picture.format == suffix.upper()
            frames = getattr(picture, "n_frames", 1)
        if suffix == "gif":  # 24 steps there and back (Pillow merges identical neighbours, so at most 46)
            assert 10 <= frames <= 46, frames
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()
