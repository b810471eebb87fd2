"""report.html in a real browser (Debian's chromium under Playwright): the slice viewer works.

Slow: it starts a browser. Screenshots go to $SWIN_UNET_REPORT_SHOTS when set (else tmp_path).
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from swin_unet.report.builder import ReportBuilder

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
NAMES = ["aorta", "gallbladder", "kidney_left", "kidney_right", "liver", "pancreas", "spleen",
         "stomach"]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def _shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SWIN_UNET_REPORT_SHOTS", tmp_path / "shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _volume_report(folder: Path) -> Path:
    """A 48x40x20 scan whose liver (class 5) moves right slice by slice."""
    x, y, z = np.meshgrid(np.arange(48), np.arange(40), np.arange(20), indexing="ij")
    label = np.zeros((48, 40, 20), np.uint8)
    label[(abs(x - 24) < 10) & (abs(y - 8 - z) < 6)] = 5
    label[(abs(x - 10) < 4) & (abs(y - 30) < 4)] = 8
    prediction = label.copy()
    prediction[:, :, 10:][label[:, :, 10:] == 8] = 0
    image = (np.sin(x / 5.0) + y / 40.0 + z / 20.0).astype(np.float32) + (label > 0)
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    builder = ReportBuilder(folder, NAMES, {"data set": "phantom", "split": "test",
                                            "checkpoint": "runs/phantom/best.pth"})
    builder.add_case("case0001", prediction, image, label, affine, (0.8, 0.8, 2.5))
    return builder.write()


def test_the_slice_viewer_scrolls_toggles_and_names_the_class_under_the_cursor(browser,
                                                                                 tmp_path):
    page_path = _volume_report(tmp_path / "run")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(page_path.as_uri())
    viewer = page.locator("div.viewer")
    page.wait_for_function("document.querySelector('div.viewer').dataset.slice !== undefined")
    views = viewer.locator(".views")
    first = viewer.get_attribute("data-slice")
    before = views.screenshot()
    viewer.locator(".slider").focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    moved = viewer.get_attribute("data-slice")
    assert int(moved) > int(first)
    assert f"slice {moved}" in viewer.locator(".slice").text_content()
    assert views.screenshot() != before  # the shown slice changed
    views.hover()
    page.mouse.wheel(0, 120)
    page.wait_for_function(f"document.querySelector('div.viewer').dataset.slice !== '{moved}'")
    assert int(viewer.get_attribute("data-slice")) > int(moved)
    # Hover over the liver: in the displayed (radiological) view it is near the middle.
    canvas = viewer.locator(".view canvas").last
    box = canvas.bounding_box()
    found = ""
    for fx in np.linspace(0.1, 0.9, 17):
        for fy in np.linspace(0.1, 0.9, 17):
            page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            found = viewer.locator(".hover").text_content()
            if "prediction: liver" in found:
                break
        if "prediction: liver" in found:
            break
    assert "prediction: liver" in found and "ground truth: liver" in found
    shown = views.screenshot()
    viewer.locator('[data-toggle="prediction"]').uncheck()
    assert views.screenshot() != shown
    viewer.locator('[data-toggle="prediction"]').check()
    viewer.locator(".opacity").fill("100")
    assert views.screenshot() != shown
    page.screenshot(path=str(_shots(tmp_path) / "viewer.png"), full_page=True)
    assert not errors


def test_a_2d_report_fits_the_window(browser, tmp_path):
    builder = ReportBuilder(tmp_path / "run2d", ["lesion"], {"data set": "phantom2d",
                                                              "checkpoint": "best.pth"})
    rng = np.random.default_rng(0)
    for i in range(30):
        label = np.zeros((90, 120, 1), np.uint8)
        label[20:70, 30 + i:90] = 1
        photo = np.stack([np.full((90, 120, 1), 0.8), rng.random((90, 120, 1)) * 0.5,
                          np.full((90, 120, 1), 0.3)])
        builder.add_case(f"lesion_{i:04d}", label, photo, label, np.eye(4), (1, 1, 1),
                         [{"dice": 0.5 + i / 100}])
    page_path = builder.write()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(page_path.as_uri())
    page.wait_for_load_state("load")
    sizes = page.evaluate("Array.from(document.images).map(i => [i.naturalWidth, "
                          "i.clientWidth])")
    assert len(sizes) == 24 and all(natural > 0 for natural, _ in sizes)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate("document.body.scrollHeight") < 9000  # a grid, not one long column
    page.screenshot(path=str(_shots(tmp_path) / "grid2d.png"), full_page=True)
    shutil.copy(tmp_path / "run2d" / "figures" / "lesion_0000.png",
                _shots(tmp_path) / "figure2d.png")
