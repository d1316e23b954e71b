"""The Train page as a person uses it: a real `streamlit run` (models in a temp copy of checkpoints/),
headless Debian Chromium, a tiny run from Start to "Saved as", the new model in the sidebar picker.

Screenshots land in tests/artifacts/train-*.png (ignored by git) to be looked at.
"""
from __future__ import annotations

import re
import shutil

import pytest

from streamlit_server import ARTIFACTS, ROOT, streamlit_server, wait_until_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]
NAME = "browser-run"
EPOCHS = 30


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train") / "checkpoints"
    shutil.copytree(ROOT / "checkpoints", folder)
    return folder


@pytest.fixture(scope="module")
def app_url(models):
    with streamlit_server(env={"LATENT_EXPLORER_CHECKPOINTS": str(models)}) as url:
        yield url


def enter(page, label: str, value: str):
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")
    wait_until_idle(page)


def test_a_tiny_run_from_start_to_the_model_picker(app_url, browser, models):
    page = browser.new_page(viewport={"width": 1400, "height": 1500})  # the whole run panel in a screenshot
    page.goto(f"{app_url}/train")
    page.locator("h1", has_text="Train").wait_for(timeout=60_000)
    wait_until_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(ARTIFACTS / "train-form.png"), full_page=True)

    enter(page, "Epochs", str(EPOCHS))
    enter(page, "Latent size", "2")
    enter(page, "Hidden sizes", "32, 16")
    enter(page, "Model name", NAME)
    assert page.get_by_text(f"Will be saved as {NAME}").count() == 1
    page.get_by_role("button", name="Start training").click()

    # Right after Start the run is queued or training: the Stop button and a progress bar are up.
    page.get_by_role("button", name="Stop").wait_for(timeout=60_000)
    page.locator('[data-testid="stProgress"]').wait_for(timeout=30_000)  # drawn by the same poll, a moment later
    try:  # a mid-run picture, curves and grid included, when the polling catches one (not asserted)
        page.wait_for_function(
            f"() => {{ const m = document.body.innerText.match(/Epoch (\\d+) of {EPOCHS}/);"
            f" return m && +m[1] >= 3 && +m[1] < {EPOCHS}; }}", timeout=60_000)
        page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=10_000)
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / "train-running.png"), full_page=True)
    except Exception:  # playwright's TimeoutError: the run finished between two polls
        pass

    saved = page.locator('[data-testid="stAlert"]').filter(has_text=re.compile("^Saved as "))  # not "Will be saved as"
    saved.wait_for(timeout=180_000)
    wait_until_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert saved.inner_text().startswith(f"Saved as {NAME}:")
    assert re.search(f"Epoch {EPOCHS} of {EPOCHS}", page.locator('[data-testid="stProgress"]').inner_text())
    assert page.get_by_role("button", name="Stop").count() == 0, "polling ended with the run"
    assert (models / f"{NAME}.safetensors").is_file()
    page.screenshot(path=str(ARTIFACTS / "train-done.png"), full_page=True)

    picker = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first
    picker.click()
    page.get_by_role("option").first.wait_for(timeout=10_000)
    options = page.get_by_role("option").all_inner_texts()
    assert NAME in [o.strip() for o in options], options
    page.screenshot(path=str(ARTIFACTS / "train-picker.png"))
    page.keyboard.press("Escape")

    page.get_by_role("button", name=f"Open {NAME}").click()
    page.locator("h1", has_text="Overview").wait_for(timeout=60_000)
    wait_until_idle(page)
    assert page.get_by_text(f"{NAME}.safetensors").count() >= 1, "the Overview shows the new model"
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(ARTIFACTS / "train-opened.png"), full_page=True)
    page.close()
