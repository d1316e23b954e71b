"""Shared links as a teacher uses them: set a view in one browser, copy the URL, open it in a new
browser context on the same server; the same state and the same picture bytes must come back.
Also: deep links on a fresh server, and a click on the map that selects the point under it."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from bench.browser import MAP_FRAME, map_frame
from streamlit_server import ARTIFACTS, open_page, streamlit_server, wait_until_idle
from test_browser_live_pad import canvas_pixels, drag, live_pad_frame, server_pixels, wait_for_report

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def pictures(page) -> list[str]:
    """The src of every picture the page's script drew (data: URIs of the PNG bytes), in order."""
    return page.locator('[data-testid="stMain"] [data-testid="stImage"] img').evaluate_all(
        "images => images.map(i => i.src)")


def query(page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def number_input(page, label: str, value: int) -> None:
    """Type a new value and press Enter; return once the link has changed (the run that took the value
    reached its end) and the script is idle. Idle alone was not enough: on a busy machine the run
    could start after wait_until_idle's first look, and the test read the pictures of the run before."""
    link = page.url
    field = page.locator('[data-testid="stNumberInput"]', has_text=label).locator("input").first
    field.fill(str(value))
    field.press("Enter")
    page.wait_for_function("(link) => location.href !== link", arg=link, timeout=60_000)
    wait_until_idle(page)


def press_slider(page, label: str, key: str, times: int) -> None:
    """Move a Streamlit slider by keyboard steps, as a person tabbing to it would (one step at a time:
    a step that lands while the page redraws the slider is lost, and the person presses again)."""
    slider = page.locator('[data-testid="stSlider"]', has_text=label).get_by_role("slider")
    for _ in range(times):
        before = slider.get_attribute("aria-valuetext")
        for attempt in range(3):
            slider.focus()
            slider.press(key)
            try:
                page.wait_for_function("([e, v]) => e.getAttribute('aria-valuetext') !== v",
                                       arg=[slider.element_handle(), before], timeout=10_000)
                break
            except PlaywrightTimeout:
                if attempt == 2:
                    raise
                wait_until_idle(page)
    wait_until_idle(page)


def choose(page, label: str, option: str) -> None:
    page.locator('[data-testid="stSelectbox"]', has_text=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_until_idle(page)


def reopen(browser, page, title: str):
    """The page's URL, opened in a new browser context (nothing shared with the first but the server)."""
    again = open_page(browser, page.url, title, height=1400)
    assert query(again) == query(page), "the link is not rewritten on arrival"
    assert again.locator('[data-testid="stAlert"]', has_text="link").count() == 0, "no notice: nothing to correct"
    return again


def assert_same_view(first, second, name: str) -> None:
    expected = pictures(first)
    assert expected
    second.wait_for_function("n => document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img')"
                             ".length >= n", arg=len(expected), timeout=30_000)  # drawn, whatever the timing
    assert pictures(second) == expected, "the same pictures, byte for byte"
    assert second.locator('[data-testid="stException"]').count() == 0
    for page, kind in ((first, "set"), (second, "reopened")):  # to look at: drawn, not skeletons
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stMain] img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / f"link-{name}-{kind}.png"), full_page=True)


def test_traversal_link_keeps_the_dragged_latent_vector(app_url, browser):
    page = open_page(browser, f"{app_url}/traversal?model=file:mnist-vae", "Traversal", height=1400)
    number_input(page, "Test image #", 7)
    frame = live_pad_frame(page)
    drag(page, frame, "input[type=range]", 0.95)
    reported = wait_for_report(page, frame)
    z = [round(v, 2) for v in reported["z"]]
    page.wait_for_function("(z) => location.search.includes('z=' + z)", arg=f"{z[0]:.2f}", timeout=30_000)
    assert query(page)["sample"] == ["7"]
    again = reopen(browser, page, "Traversal")
    pad = live_pad_frame(again)
    assert np.allclose(pad.evaluate("livePad.z"), z, atol=1e-6), "the pad starts at the linked z, not at μ"
    assert np.abs(canvas_pixels(pad).astype(int) - server_pixels("mnist-vae", z).astype(int)).max() <= 2
    assert_same_view(page, again, "traversal")


def test_traversal_link_from_the_server_sliders(app_url, browser):
    page = open_page(browser, f"{app_url}/traversal?model=file:mnist-vae-2d&base=zero", "Traversal", height=1400)
    page.get_by_text("Decode in this browser", exact=True).click()
    wait_until_idle(page)
    press_slider(page, "z0", "ArrowRight", 30)  # 30 steps of 0.05
    slider = page.locator('[data-testid="stSlider"]', has_text="z0").get_by_role("slider")
    shown = slider.get_attribute("aria-valuetext")  # 1.50, or a step less on a machine too busy for one
    assert float(shown) >= 1.0
    page.wait_for_function("(z) => location.search.includes('z=' + z)", arg=shown, timeout=30_000)
    again = reopen(browser, page, "Traversal")
    again.get_by_text("Decode in this browser", exact=True).click()  # this browser's own preference
    wait_until_idle(again)
    assert again.locator('[data-testid="stSlider"]', has_text="z0").get_by_role("slider").get_attribute(
        "aria-valuetext") == shown
    assert_same_view(page, again, "traversal-server")


def test_interpolation_link_keeps_both_endpoints(app_url, browser):
    page = open_page(browser, f"{app_url}/interpolation?model=file:mnist-vae", "Interpolation", height=1400)
    number_input(page, "To test image #", 5)
    press_slider(page, "Steps", "ArrowLeft", 3)
    assert query(page)["to"] == ["5"] and query(page)["steps"] == ["7"]
    assert_same_view(page, reopen(browser, page, "Interpolation"), "interpolation")


def test_autoencoder_or_vae_link_keeps_the_pair_the_ends_and_the_draws(app_url, browser):
    page = open_page(browser, f"{app_url}/ae_vs_vae?model=file:mnist-vae", "Autoencoder or VAE?", height=1400)
    # the shipped pair, side by side (waited for: the page loads the autoencoder after its title is up)
    page.get_by_text("Autoencoder · mnist-ae", exact=False).first.wait_for(timeout=60_000)
    drawn = "n => document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img').length >= n"
    page.wait_for_function(drawn, arg=12, timeout=60_000)  # 3 + 2 + 2 + 5 rows, and the variance map
    before = pictures(page)
    number_input(page, "To test image #", 9)
    number_input(page, "Seed", 4)
    page.wait_for_function(drawn, arg=len(before), timeout=60_000)
    after = pictures(page)
    assert len(after) == len(before) and after[:3] == before[:3], "the reconstructions stay"
    assert after[3:7] != before[3:7], "the draws and the path follow the seed and the end"
    assert query(page)["end"] == ["9"] and query(page)["seed"] == ["4"] and query(page)["partner"] == ["mnist-ae"]
    assert_same_view(page, reopen(browser, page, "Autoencoder or VAE?"), "ae-vs-vae")


def test_latent_map_link_keeps_the_map_and_a_clicked_selection(app_url, browser):
    page = open_page(browser, f"{app_url}/latent_map?model=file:mnist-vae", "Latent map", height=1600)
    page.get_by_text("2-D", exact=True).click()
    page.get_by_role("button", name="Compute map").click()
    wait_until_idle(page)
    index = click_a_point(page)
    page.wait_for_function("(i) => location.search.includes('selected=' + i)", arg=str(index), timeout=30_000)
    assert query(page)["map"] == ["on"] and query(page)["sample"] == [str(index)]
    assert_same_view(page, reopen(browser, page, "Latent map"), "latent-map")


def click_in_map(page, frame, x: float, y: float) -> None:
    """A person's click at (x, y) of the map frame: move there, let plotly's hover settle, press, release."""
    box = page.locator(MAP_FRAME).bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + y)
    page.wait_for_timeout(300)  # a busy machine delivers hover events late
    page.mouse.down()  # no move in between: a click, not a drag
    page.mouse.up()


def click_a_point(page) -> int:
    """Click one point of the 2-D map where plotly draws it; returns its dataset index."""
    frame = map_frame(page)
    target = frame.evaluate("""() => { const gd = document.getElementById('map'), t = gd._fullData[0];
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, i = Math.floor(t.x.length / 2);
        return {x: xa._offset + xa.l2p(t.x[i]), y: ya._offset + ya.l2p(t.y[i])}; }""")
    click_in_map(page, frame, target["x"], target["y"])
    frame.wait_for_function("() => window.mapState.clicked !== null", timeout=10_000)
    wait_until_idle(page)
    return int(frame.evaluate("() => window.mapState.clicked"))  # the point plotly picked there (maybe a twin)


def emptiest_spot(frame) -> dict:
    """The pixel of the 2-D map's plot area farthest from every point, and its map coordinates."""
    return frame.evaluate("""() => { const gd = document.getElementById('map'), t = gd._fullData[0];
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const px = Array.from(t.x, (v) => xa.l2p(v)), py = Array.from(t.y, (v) => ya.l2p(v));
        let best = null;
        for (let gx = 0.1; gx < 0.91; gx += 0.04) for (let gy = 0.1; gy < 0.91; gy += 0.04) {
          const cx = gx * xa._length, cy = gy * ya._length;
          let nearest = Infinity;
          for (let i = 0; i < px.length; i++) nearest = Math.min(nearest, Math.hypot(px[i] - cx, py[i] - cy));
          if (!best || nearest > best.gap) best = {gap: nearest, x: xa._offset + cx, y: ya._offset + cy,
                                                   mapX: xa.p2l(cx), mapY: ya.p2l(cy)};
        }
        return best; }""")


def test_a_click_on_an_empty_spot_of_the_map_decodes_it(app_url, browser):
    """Decode anywhere: compute a 2-D map, click where no point is, see the picture decoded there, marked
    on the map, and the same in a new browser context opened on the link."""
    page = open_page(browser, f"{app_url}/latent_map?model=file:mnist-vae", "Latent map", height=1600)
    page.get_by_role("button", name="Compute map").click()  # PCA, 2-D
    wait_until_idle(page)
    frame = map_frame(page)
    spot = emptiest_spot(frame)
    assert spot["gap"] > 15, "a spot at least 15 pixels from every point"
    click_in_map(page, frame, spot["x"], spot["y"])
    page.wait_for_function("() => location.search.includes('spot=')", timeout=30_000)
    wait_until_idle(page)
    x, y = (float(v) for v in query(page)["spot"][0].split(","))
    span = frame.evaluate("() => document.getElementById('map')._fullLayout.xaxis.range")
    assert abs(x - spot["mapX"]) < 0.01 * abs(span[1] - span[0]) and abs(y - spot["mapY"]) < 0.01 * abs(span[1] - span[0])
    assert "selected" not in query(page), "an empty spot selects nothing"
    heading = page.get_by_text("Decoded at the clicked spot")
    heading.wait_for(timeout=30_000)
    decoded = page.locator('[data-testid="stImage"]', has_text="inverse_transform")
    assert decoded.count() == 1
    map_frame(page).wait_for_function(
        "() => document.getElementById('map')._fullData.some((t) => t.name === 'decoded here')", timeout=30_000)
    decoded.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "latent-map-decode-anywhere.png"))
    again = reopen(browser, page, "Latent map")
    again.get_by_text("Decoded at the clicked spot").wait_for(timeout=60_000)
    assert pictures(again) == pictures(page), "the same decoded picture from the link"


def test_a_lasso_on_the_map_selects_the_points_inside_it(app_url, browser):
    """Lasso selection, drawn with the mouse as a person would (the toolbar's lasso, then a drag):
    every point inside the loop is selected, and the page shows them."""
    page = open_page(browser, f"{app_url}/latent_map?model=file:mnist-vae", "Latent map", height=1600)
    page.get_by_role("button", name="Compute map").click()  # PCA, 2-D
    wait_until_idle(page)
    frame = map_frame(page)
    frame.locator('.modebar-btn[data-val="lasso"]').click()
    loop = frame.evaluate("""() => { const gd = document.getElementById('map');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, cx = xa._offset + xa._length / 2,
              cy = ya._offset + ya._length / 2, r = Math.min(xa._length, ya._length) / 5;
        const loop = [];
        for (let i = 0; i <= 24; i++) loop.push([cx + r * Math.cos(i * Math.PI / 12), cy + r * Math.sin(i * Math.PI / 12)]);
        const t = gd._fullData[0];  // which points lie inside the circle the loop traces
        const inside = [];
        for (let i = 0; i < t.x.length; i++)
          if (Math.hypot(xa._offset + xa.l2p(t.x[i]) - cx, ya._offset + ya.l2p(t.y[i]) - cy) < 0.97 * r) inside.push(t.customdata[i]);
        return {loop, inside}; }""")
    box = page.locator(MAP_FRAME).bounding_box()
    page.mouse.move(box["x"] + loop["loop"][0][0], box["y"] + loop["loop"][0][1])
    page.mouse.down()
    for x, y in loop["loop"][1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=3)
    page.mouse.up()
    frame.wait_for_function("() => window.mapState.selected !== null", timeout=10_000)
    page.wait_for_function("() => location.search.includes('selected=')", timeout=30_000)
    wait_until_idle(page)
    selected = {int(i) for part in query(page)["selected"][0].split(",")
                for i in (range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1))}
    assert len(loop["inside"]) >= 20, "the loop holds a crowd of points"
    assert set(loop["inside"]) <= selected, "every point well inside the loop is selected"
    assert len(selected) <= 1.3 * len(loop["inside"]) + 5, "and hardly any outside it"
    assert page.get_by_text(f"{len(selected)} selected").count() == 1
    assert "spot" not in query(page), "pressing the toolbar's lasso button decoded no spot"


def test_a_click_selects_a_point_on_the_3d_map(app_url, browser):
    page = open_page(browser, f"{app_url}/latent_map?model=file:mnist-vae", "Latent map", height=1600)
    page.get_by_text("3-D", exact=True).click()
    page.get_by_role("button", name="Compute map").click()
    wait_until_idle(page)
    frame = map_frame(page)
    box = page.locator(MAP_FRAME).bounding_box()
    index = None
    for dy, dx in ((dy, dx) for dy in range(-60, 61, 12) for dx in range(-120, 121, 12)):
        # Hover where points are dense until plotly's own picking finds one, then click it there.
        page.mouse.move(box["x"] + box["width"] / 2 + dx, box["y"] + box["height"] / 2 + dy)
        page.wait_for_timeout(300)  # a busy machine delivers hover events late: let them settle
        if frame.evaluate("() => window.mapState.hovered") is None:
            continue
        clicks = frame.evaluate("() => window.mapState.clicks")
        page.mouse.down()  # no move in between: a click, not a drag
        page.mouse.up()
        try:
            frame.wait_for_function("(n) => window.mapState.clicks > n", arg=clicks, timeout=3_000)
        except Exception:  # noqa: BLE001 - the point moved out from under the mouse: try the next spot
            continue
        index = int(frame.evaluate("() => window.mapState.clicked"))
        break
    assert index is not None, "no point under the mouse anywhere near the middle of the map"
    page.wait_for_function("(i) => location.search.includes('selected=' + i)", arg=str(index), timeout=30_000)
    wait_until_idle(page)
    assert query(page)["sample"] == [str(index)] and query(page)["dims"] == ["3"]
    assert page.get_by_text("1 selected").count() == 1
    page.screenshot(path=str(ARTIFACTS / "link-latent-map-3d-click.png"), full_page=True)


def test_arithmetic_link_keeps_the_operands_and_the_scale(app_url, browser):
    page = open_page(browser, f"{app_url}/arithmetic?model=file:mnist-vae", "Latent arithmetic", height=1400)
    press_slider(page, "Scale s", "ArrowRight", 5)
    number_input(page, "Test image #", 11)
    assert query(page)["scale"] == ["1.5"] and query(page)["c"] == ["sample:11"]
    assert_same_view(page, reopen(browser, page, "Latent arithmetic"), "arithmetic")


def test_conditional_link_keeps_the_grid(app_url, browser):
    page = open_page(browser, f"{app_url}/conditional?model=file:mnist-cvae", "Conditional generation", height=1600)
    number_input(page, "Seed", 42)
    press_slider(page, "Samples (columns)", "ArrowLeft", 3)
    assert query(page)["seed"] == ["42"] and query(page)["n"] == ["5"]
    assert_same_view(page, reopen(browser, page, "Conditional generation"), "conditional")


def test_anomalies_link_keeps_the_score_threshold_and_count(app_url, browser):
    page = open_page(browser, f"{app_url}/anomalies?model=file:mnist-vae-no3", "Anomalies", height=1600)
    page.get_by_text("reconstruction error (MSE per pixel)", exact=True).click()
    wait_until_idle(page)
    press_slider(page, "How many", "ArrowRight", 2)
    press_slider(page, "Threshold", "ArrowLeft", 10)
    assert query(page)["score"] == ["recon_error"] and query(page)["top"] == ["16"]
    again = reopen(browser, page, "Anomalies")
    assert_same_view(page, again, "anomalies")
    metric = '[data-testid="stMetric"]'
    again.locator(metric).first.wait_for(timeout=30_000)
    assert again.locator(metric).all_inner_texts() == page.locator(metric).all_inner_texts(), "the same flagged count"


def test_deep_links_open_clean_on_a_fresh_server(browser):
    """The first session of a new server runs in Streamlit's legacy pages/ mode; links must still work."""
    with streamlit_server() as url:
        for path, title in (("overview", "Overview"), ("traversal", "Traversal"), ("overview", "Overview")):
            page = open_page(browser, f"{url}/{path}?model=file:mnist-vae-2d&sample=3", title)
            assert page.get_by_text("Page not found").count() == 0
            assert query(page)["model"] == ["file:mnist-vae-2d"] and query(page)["sample"] == ["3"]
            page.close()
