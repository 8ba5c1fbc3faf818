"""Own data in a real browser: Home's folder card opens Setup, which reads generated folders (a train/val
source, an unlabelled target), refuses the target for a fine-tune on target labels, accepts it for DANN,
and shows the augmentation grid. Screenshot: docs/screenshots/setup-folder.png."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from test_browser import (CHROMIUM_ARGS, VIEWPORT, Server, browser, chromium_path, key_css,  # noqa: F401 (fixtures)
                          wait_app)
from test_own_data import CLASSES, _write, flat_folder

from tl_ui import keys

pytestmark = pytest.mark.browser
DOCS_SHOT = Path(__file__).resolve().parents[1] / "docs" / "screenshots" / "setup-folder.png"


@pytest.fixture(scope="module")
def data_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("data")
    for cls in CLASSES:
        _write(root / "shapes" / "train" / cls, cls, 20, size=120)
        _write(root / "shapes" / "val" / cls, cls, 5, size=120, start=100)
    flat_folder(root / "street", n=30, size=120)
    before = os.environ.get("TL_DATA_ROOT")
    os.environ["TL_DATA_ROOT"] = str(root)
    srv = Server(tmp_path_factory.mktemp("tl_home"), tmp_path_factory.mktemp("server"))
    try:
        srv.start()
    finally:
        if before is None:
            os.environ.pop("TL_DATA_ROOT", None)
        else:
            os.environ["TL_DATA_ROOT"] = before
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log_text(), srv.log_text()[-3000:]


@pytest.mark.timeout(600)
def test_home_folder_card_and_setup_with_own_folders(browser, data_server: Server) -> None:  # noqa: F811
    k = keys.setup_key
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(90_000)
    page.goto(data_server.url + "/")
    wait_app(page)
    card = page.locator(key_css(keys.HOME_FOLDER) + " button").first
    page.get_by_text("the target may be plain images without labels").wait_for()
    card.click()
    page.get_by_role("heading", name="Set up a run", exact=True).wait_for()
    wait_app(page)

    def type_into(key: str, text: str) -> None:
        box = page.locator(key_css(k(key)) + " input").first
        box.fill(text)
        box.press("Enter")
        wait_app(page)

    type_into("data.source_path", "shapes")
    type_into("data.target_path", "street")
    page.get_by_text(re.compile(r"Found: train/ and val/ folders, 2 classes \(circle, square\), 40 \+ 10")).wait_for()
    page.get_by_text(re.compile(r"Found: no class sub-folders: unlabelled images")).wait_for()

    # A fine-tune on target labels cannot use an unlabelled target: said under the field, Start disabled.
    page.locator(key_css(keys.SETUP_METHOD)).get_by_text("Fine-tune on target labels", exact=False).first.click()
    wait_app(page)
    page.get_by_text(re.compile(r"has no class sub-folders, so its images have no labels")).first.wait_for()
    page.locator(key_css(keys.SETUP_START) + " button[disabled]").first.wait_for()
    page.locator(key_css(keys.SETUP_METHOD)).get_by_text(re.compile("^DANN: domain-adversarial")).first.click()
    wait_app(page)
    page.locator(key_css(k("optim.augment")) + " label").first.click()
    wait_app(page)
    type_into("optim.augment_jitter", "0.3")
    page.get_by_text(re.compile("What the model sees")).wait_for()
    try:  # the form reruns after each change: wait for the last one to enable Start
        page.locator(key_css(keys.SETUP_START) + " button:not([disabled])").first.wait_for(timeout=30_000)
    except Exception:
        errors = page.locator("[data-testid='stAlertContentError']").all_inner_texts()
        pytest.fail(f"Start stays disabled: {errors}")
    grid = page.locator("[data-testid='stImage'] img").last
    grid.scroll_into_view_if_needed()
    width = grid.evaluate("im => im.complete && im.naturalWidth ? im.naturalWidth : new Promise(done => "
                          "im.addEventListener('load', () => done(im.naturalWidth)))")
    assert width > 300  # the grid of augmented source images has arrived
    page.locator(key_css(k("data.source_path"))).scroll_into_view_if_needed()
    page.wait_for_timeout(800)
    DOCS_SHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_SHOT))
    page.close()
