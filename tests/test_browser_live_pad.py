"""The live pad in a real browser: headless Chromium drags its controls against a real `streamlit run`;
the canvas must change while dragging and show what PyTorch decodes from the vector it reports."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from apptest_support import ROOT
from streamlit_server import ARTIFACTS, open_page, wait_until_idle
from vae_core.checkpoint import load_checkpoint
from vae_core.images import to_uint8
from vae_core.latent import slerp_at

pytestmark = [pytest.mark.browser, pytest.mark.slow]
FRAME = 'iframe[title="pages.ui.live_pad.live_pad"]'


def live_pad_frame(page):
    """The component's frame, once its decoder session is running and the first picture is drawn."""
    page.locator(FRAME).first.wait_for(timeout=60_000)
    frame = next(f for f in page.frames if "/component/pages.ui.live_pad.live_pad/" in f.url)
    frame.wait_for_function("window.livePad && (window.livePad.ready || window.livePad.error)", timeout=60_000)
    assert frame.evaluate("livePad.error") is None
    return frame


def canvas_pixels(frame) -> np.ndarray:
    """The picture as the browser shows it: (H, W, 3) uint8 read back from the canvas."""
    width, height, data = frame.evaluate("""() => { const c = document.querySelector('canvas.picture');
        return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }""")
    return np.asarray(data, dtype=np.uint8).reshape(height, width, 4)[..., :3]


def server_pixels(model_name: str, z, label: int | None = None) -> np.ndarray:
    model = load_checkpoint(ROOT / "checkpoints" / f"{model_name}.safetensors").model.eval()
    with torch.inference_mode():
        image = model.decode(torch.tensor([z], dtype=torch.float32), None if label is None else torch.tensor([label]))
    array = to_uint8(image)[0]
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


def drag(page, frame, selector: str, to_fraction: float, steps: int = 25) -> None:
    """Press on the control's middle and drag to `to_fraction` of its width, as a hand would."""
    box = frame.locator(selector).first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * to_fraction, y, steps=steps)
    page.mouse.up()


def wait_for_report(page, frame) -> dict:
    frame.wait_for_function("livePad.reported !== null", timeout=30_000)
    wait_until_idle(page)
    return frame.evaluate("livePad.reported")


@pytest.mark.parametrize("model", ["digits-vae", "shapes-vae", "mnist-cvae"])
def test_dragging_a_slider_redraws_the_canvas_as_pytorch_would(app_url, browser, model):
    page = open_page(browser, f"{app_url}/traversal?model=file:{model}", "Traversal")
    outside = []
    page.on("request", lambda r: r.url.startswith((app_url, "data:", "blob:")) or outside.append(r.url))
    frame = live_pad_frame(page)
    before = canvas_pixels(frame)
    decodes = frame.evaluate("livePad.decodes")
    drag(page, frame, "input[type=range]", 0.95)
    assert frame.evaluate("livePad.decodes") - decodes >= 5, "the picture is redrawn while the slider moves"
    reported = wait_for_report(page, frame)
    after = canvas_pixels(frame)
    assert reported["source"] == "slider"
    assert np.abs(after.astype(int) - before.astype(int)).max() > 20, "the picture changed"
    label = None
    if model == "mnist-cvae":
        label = page.locator('[data-testid="stSelectbox"]', has_text="Class").locator("input").input_value()
        label = int(label)
    expected = server_pixels(model, reported["z"], label)
    assert np.abs(after.astype(int) - expected.astype(int)).max() <= 2, "the browser draws what PyTorch decodes"
    page.wait_for_function("(z) => location.search.includes('z=' + z)", arg=f"{reported['z'][0]:.2f}",
                           timeout=30_000)  # Python has the vector: the share link carries it
    assert not outside, f"the live pad fetched {outside[:3]}"
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(ARTIFACTS / f"live-pad-{model}.png"), full_page=True)
    page.close()


def test_dragging_on_the_pad_moves_two_dimensions(app_url, browser):
    page = open_page(browser, f"{app_url}/traversal?model=file:mnist-vae-2d", "Traversal")
    frame = live_pad_frame(page)
    before = canvas_pixels(frame)
    box = frame.locator(".pad").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.1, steps=20)
    page.mouse.up()
    reported = wait_for_report(page, frame)
    assert reported["source"] == "pad"
    reach = float(frame.locator("input[type=range]").first.get_attribute("max"))  # the pad's and sliders' ±range
    assert reach >= 4, "at least the prior's ±4σ"
    assert reported["z"][0] == pytest.approx(0.8 * reach, abs=0.05) and \
        reported["z"][1] == pytest.approx(0.8 * reach, abs=0.05), "x is z0 and y is z1 (up is +), as on the map"
    after = canvas_pixels(frame)
    assert np.abs(after.astype(int) - before.astype(int)).max() > 20
    assert np.abs(after.astype(int) - server_pixels("mnist-vae-2d", reported["z"]).astype(int)).max() <= 2
    page.screenshot(path=str(ARTIFACTS / "live-pad-2d.png"), full_page=True)
    page.close()


@pytest.mark.parametrize("model", ["digits-vae", "mnist-vae-2d"])
def test_the_scrubber_follows_the_same_slerp_as_python(app_url, browser, model):
    page = open_page(browser, f"{app_url}/interpolation?model=file:{model}", "Interpolation")
    frame = live_pad_frame(page)
    drag(page, frame, "input[aria-label=t]", 0.8)
    reported = wait_for_report(page, frame)
    assert reported["mode"] == "slerp" and 0.6 < reported["t"] < 0.95
    args = frame.evaluate("livePad.endpoints")  # A and B as Python sent them
    expected = slerp_at(torch.tensor(args["a"]), torch.tensor(args["b"]), reported["t"])[0]
    assert np.abs(np.asarray(reported["z"]) - expected.numpy()).max() < 1e-5
    assert np.abs(canvas_pixels(frame).astype(int) - server_pixels(model, reported["z"]).astype(int)).max() <= 2
    if model == "mnist-vae-2d":  # a 2-D latent is its own map: Python marks the scrubbed point on it
        page.get_by_text("scrubbed: slerp").first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / f"live-pad-scrubber-{model}.png"), full_page=True)
    page.close()


def test_without_webassembly_the_page_falls_back_to_server_sliders(app_url, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script("delete globalThis.WebAssembly;")  # every frame, the component's included
    page = context.new_page()
    page.goto(f"{app_url}/traversal")
    page.get_by_text("cannot run the live pad").wait_for(timeout=60_000)
    wait_until_idle(page)
    assert "no WebAssembly" in page.get_by_test_id("stAlert").first.inner_text()
    assert page.locator(FRAME).count() == 0
    figure = page.locator('[data-testid="stImage"]', has_text="decode(z)")
    before = figure.locator("img").get_attribute("src")
    slider = page.get_by_role("slider").first
    slider.focus()
    for _ in range(20):
        slider.press("ArrowRight")
    page.wait_for_function("""(old) => { const f = [...document.querySelectorAll('[data-testid="stImage"]')]
        .find(e => e.innerText.includes('decode(z)')); return f && f.querySelector('img').src !== old; }""",
                           arg=before, timeout=30_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(ARTIFACTS / "live-pad-fallback.png"), full_page=True)
    context.close()


def test_picking_another_model_swaps_the_pads_decoder(app_url, browser):
    page = open_page(browser, f"{app_url}/traversal?model=file:digits-vae", "Traversal")
    frame = live_pad_frame(page)
    assert frame.evaluate("document.querySelector('canvas.picture').width") == 8
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name="shapes-vae", exact=True).click()
    frame.wait_for_function("document.querySelector('canvas.picture')?.width === 64 && livePad.ready", timeout=60_000)
    wait_until_idle(page)
    assert frame.evaluate("livePad.error") is None
    assert frame.evaluate("livePad.reported") is None  # the same frame: its decoder session was replaced
    drag(page, frame, "input[type=range]", 0.9)
    reported = wait_for_report(page, frame)
    assert len(reported["z"]) == 10, "shapes-vae's ten latent dimensions"
    assert np.abs(canvas_pixels(frame).astype(int) - server_pixels("shapes-vae", reported["z"]).astype(int)).max() <= 2
    page.close()


def test_an_uploaded_onnx_pair_drives_the_live_pad_with_its_own_decoder(app_url, browser, tmp_path):
    """A model that runs no Python, uploaded as a zip: the live pad runs the pair's decoder.onnx and
    draws what the PyTorch model it was exported from decodes."""
    import shutil

    from vae_core.onnx_pair import export_pair

    ckpt = load_checkpoint(ROOT / "checkpoints" / "digits-vae.safetensors")
    folder = export_pair(ckpt.model.eval(), ckpt.dataset, tmp_path / "digits-onnx", ckpt.metrics)
    zipped = shutil.make_archive(str(tmp_path / "digits-onnx"), "zip", root_dir=tmp_path, base_dir=folder.name)
    page = open_page(browser, app_url, "Overview")
    page.get_by_text("Upload a model").click()
    page.locator('[data-testid="stSidebar"] input[type="file"]').set_input_files(zipped)
    page.get_by_role("button", name="Open upload").click()
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("digits-onnx.zip").first.wait_for(timeout=60_000)
    wait_until_idle(page)
    page.get_by_role("link", name="Traversal").first.click()  # in the app: the session keeps its upload
    frame = live_pad_frame(page)
    drag(page, frame, "input[type=range]", 0.9)
    reported = wait_for_report(page, frame)
    expected = server_pixels("digits-vae", reported["z"])
    assert np.abs(canvas_pixels(frame).astype(int) - expected.astype(int)).max() <= 2
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(ARTIFACTS / "live-pad-onnx-upload.png"), full_page=True)
    page.close()


def test_the_runtime_arrives_compressed_once_and_a_reload_downloads_none_of_it(app_url, browser):
    """onnxruntime-web's 14 MB WebAssembly travels Brotli-compressed (2.3 MB on the wire) and is kept in the
    browser's IndexedDB: the same browser reloading the page fetches nothing of it."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    runtime = []
    page.on("requestfinished", lambda r: ".wasm" in r.url and runtime.append(r.sizes()["responseBodySize"]))
    page.goto(f"{app_url}/traversal?model=file:mnist-vae")
    frame = live_pad_frame(page)
    assert frame.evaluate("livePad.runtimeFrom") == "the server"
    assert len(runtime) == 1 and 0 < runtime[0] < 2_500_000, runtime
    runtime.clear()
    page.reload()
    frame = live_pad_frame(page)
    assert frame.evaluate("livePad.runtimeFrom") == "this browser's storage"
    assert runtime == [], "a reload downloads none of the runtime"
    before = canvas_pixels(frame)
    drag(page, frame, "input[type=range]", 0.95)
    assert np.abs(canvas_pixels(frame).astype(int) - before.astype(int)).max() > 20, "the stored runtime decodes"


def test_a_runtime_the_server_cannot_serve_yet_is_tried_again(app_url, browser):
    """Behind `make serve`, a student moved to another worker asks it for the runtime before a page with the
    pad has run there: a 404 (or a dropped connection) until then. The pad tries again and starts."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    refused = []

    def not_yet(route):
        if len(refused) < 2:
            refused.append(route.request.url)
            route.fulfill(status=404, body="Not Found")
        else:
            route.continue_()

    page.route("**/ort-wasm-simd-threaded.wasm.br", not_yet)
    page.goto(f"{app_url}/traversal?model=file:mnist-vae")
    frame = live_pad_frame(page)
    assert len(refused) == 2 and frame.evaluate("livePad.runtimeRetries") == 2
    before = canvas_pixels(frame)
    drag(page, frame, "input[type=range]", 0.95)
    assert np.abs(canvas_pixels(frame).astype(int) - before.astype(int)).max() > 20, "the pad decodes"
