"""The annotation page in a real headless Chromium, driven as a person would (selenium: the mouse on the
canvas, the keyboard shortcuts): a stroke saved with S is on disk after a reload, and two tabs editing
the same mask cannot clobber each other. Needs Debian's ``chromium`` (skipped without it) and
``chromium-driver`` (a failure without it: .ci/run installs both)."""

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rightreasons.annotate import AnnotateApp, AnnotateServer, MaskStore

W, H = 64, 48  # not square: the canvas-to-image mapping must get both axes right
WAIT = 30  # seconds at most for any condition; each wait ends as soon as it holds


def make_folder(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(3)
    lines = ["file,label,split"]
    for i in range(3):
        Image.fromarray(rng.integers(60, 200, (H, W, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        lines.append(f"images/{i}.png,{'ab'[i % 2]},train")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def driver():
    if shutil.which("chromium") is None:
        pytest.skip("needs Debian's chromium package (.ci/run installs it)")
    chromedriver = shutil.which("chromedriver")
    if chromedriver is None:
        pytest.fail("chromedriver not found: install Debian's chromium-driver package (apt-get install "
                    "chromium-driver; .ci/run does when it is missing)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-extensions", "--window-size=1280,860", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    d = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield d
    d.quit()


@pytest.fixture
def served(tmp_path):
    folder = make_folder(tmp_path / "data")
    server = AnnotateServer(AnnotateApp(MaskStore(folder))).start()
    yield server, folder
    server.stop()


def wait(driver, condition, what):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(lambda d: condition(d))
    except TimeoutException:
        status = driver.execute_script("return document.getElementById('status').textContent")
        raise AssertionError(f"timed out waiting for {what} (status line: {status!r})") from None


def body(driver, key):
    return driver.execute_script(f"return document.body.dataset.{key} || ''")


def status_text(driver):
    return driver.execute_script("return document.getElementById('status').textContent")


def open_page(driver, url, file):
    driver.get(url)
    wait(driver, lambda d: body(d, "ready") == "1" and body(d, "file") == file, f"{file} shown")


def draw(driver, points):
    """Press the mouse at the first point (fractions of the canvas from its top-left), move through the
    others, release."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "view")
    w, h = canvas.size["width"], canvas.size["height"]
    assert w > 3 * W and h > 3 * H, "the canvas shows the image enlarged"
    px = [(round((fx - 0.5) * w), round((fy - 0.5) * h)) for fx, fy in points]
    chain = ActionChains(driver, duration=10).move_to_element_with_offset(canvas, *px[0]).click_and_hold()
    for (x0, y0), (x1, y1) in zip(px, px[1:]):
        for k in range(1, 6):  # a hand moves in small steps
            chain.move_by_offset(round((x1 - x0) / 5) if k < 5 else x1 - x0 - 4 * round((x1 - x0) / 5),
                                 round((y1 - y0) / 5) if k < 5 else y1 - y0 - 4 * round((y1 - y0) / 5))
    chain.release().perform()


def press(driver, keys):
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()


def disk_mask(folder: Path, file: str) -> np.ndarray:
    import csv

    rows = {r["file"]: r for r in csv.DictReader((folder / "labels.csv").open())}
    cell = rows[file].get("mask")
    assert cell, f"labels.csv has no mask for {file}"
    with Image.open(folder / cell) as im:
        assert im.size == (W, H) and im.mode == "L"
        a = np.asarray(im)
    assert set(np.unique(a)) <= {0, 255}
    return a == 255


def test_a_stroke_saved_with_the_shortcut_is_on_disk_after_a_reload(driver, served):
    server, folder = served
    open_page(driver, server.url, "images/0.png")
    press(driver, "\ue014")  # the right arrow: next example
    wait(driver, lambda d: body(d, "ready") == "1" and body(d, "file") == "images/1.png", "the next example")
    draw(driver, [(0.2, 0.4), (0.8, 0.4)])
    wait(driver, lambda d: "Unsaved" in status_text(d), "the page to notice the drawing")
    assert not (folder / "masks").exists()  # nothing written before the user saves
    press(driver, "s")
    wait(driver, lambda d: status_text(d).startswith("Saved"), "the save")

    mask = disk_mask(folder, "images/1.png")
    row = round(0.4 * H - 0.5)
    assert mask[row, round(0.25 * W):round(0.75 * W)].all(), "white along the stroke"
    assert not mask[:row - 6].any() and not mask[row + 7:].any(), "black away from it"
    assert not mask[:, :round(0.2 * W) - 6].any() and not mask[:, round(0.8 * W) + 6:].any()
    assert MaskStore(folder).version("images/1.png") == body(driver, "version")

    driver.refresh()
    wait(driver, lambda d: body(d, "ready") == "1" and body(d, "file") == "images/1.png", "the page after a reload")
    assert body(driver, "version") == MaskStore(folder).version("images/1.png")  # it shows the saved mask
    assert np.array_equal(disk_mask(folder, "images/1.png"), mask)
    assert "mask: saved" in driver.execute_script("return document.getElementById('info').textContent")


def test_two_tabs_cannot_clobber_each_other(driver, served):
    server, folder = served
    first = driver.current_window_handle
    open_page(driver, server.url, "images/0.png")
    driver.switch_to.new_window("tab")
    second = driver.current_window_handle
    open_page(driver, server.url, "images/0.png")

    driver.switch_to.window(first)
    draw(driver, [(0.1, 0.2), (0.9, 0.2)])
    press(driver, "s")
    wait(driver, lambda d: status_text(d).startswith("Saved"), "the first tab's save")
    saved = disk_mask(folder, "images/0.png")
    assert saved[round(0.2 * H - 0.5)].any()

    driver.switch_to.window(second)
    draw(driver, [(0.1, 0.8), (0.9, 0.8)])
    press(driver, "s")
    wait(driver, lambda d: "conflict" in status_text(d), "the second tab's save to be refused")
    banner = driver.execute_script("var c = document.getElementById('conflict'); return c.hidden ? '' : c.textContent")
    assert "changed since this page loaded it" in banner and "reload" in banner.lower()
    assert np.array_equal(disk_mask(folder, "images/0.png"), saved), "the first tab's work is intact"

    # reloading the image shows the first tab's mask; drawing on it and saving then works
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "reload-example").click()
    wait(driver, lambda d: body(d, "version") == MaskStore(folder).version("images/0.png"), "the reloaded mask")
    draw(driver, [(0.1, 0.8), (0.9, 0.8)])
    press(driver, "s")
    wait(driver, lambda d: status_text(d).startswith("Saved"), "the second tab's save after reloading")
    both = disk_mask(folder, "images/0.png")
    assert both[round(0.2 * H - 0.5)].any() and both[round(0.8 * H - 0.5)].any()
    assert (both | saved).sum() == both.sum()
    driver.close()
    driver.switch_to.window(first)


def test_box_and_polygon_and_undo(driver, served):
    """The box and polygon tools mark the pixels inside them; Z undoes a stroke before it is saved."""
    server, folder = served
    open_page(driver, server.url, "images/0.png")
    press(driver, "r")
    draw(driver, [(0.25, 0.25), (0.5, 0.5)])
    press(driver, "p")
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "view")
    w, h = canvas.size["width"], canvas.size["height"]
    chain = ActionChains(driver, duration=10)
    for fx, fy in ((0.6, 0.6), (0.9, 0.6), (0.9, 0.9), (0.6, 0.9)):
        chain.move_to_element_with_offset(canvas, round((fx - 0.5) * w), round((fy - 0.5) * h)).click()
    chain.send_keys("\ue007").perform()  # Enter closes the polygon
    press(driver, "b")
    draw(driver, [(0.05, 0.9), (0.3, 0.9)])
    press(driver, "z")  # the brush stroke goes again
    press(driver, "s")
    wait(driver, lambda d: status_text(d).startswith("Saved"), "the save")
    mask = disk_mask(folder, "images/0.png")
    assert mask[round(0.3 * H):round(0.45 * H), round(0.3 * W):round(0.45 * W)].all()  # the box
    assert mask[round(0.65 * H):round(0.85 * H), round(0.65 * W):round(0.85 * W)].all()  # the polygon
    assert not mask[round(0.9 * H - 0.5), :round(0.3 * W)].any()  # the undone stroke
    assert not mask[:round(0.2 * H)].any()
    img = io.BytesIO((folder / "masks/0.png").read_bytes())
    assert Image.open(img).size == (W, H)
