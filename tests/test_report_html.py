"""report.html: self-contained, and it renders in a real headless Chromium without errors with every
image decoded. The browser part needs Debian's `chromium` package (skipped, saying so, without it)."""

import base64
import io
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from data_fixtures import make_idx_dir
from rightreasons.report.html import write_report
from rightreasons.report.results import collect_rows, write_results_csv
from rightreasons.report.saliency import attribution_kinds
from rightreasons.report.summary import write_summary
from rightreasons.train import TrainConfig, run_training, save_run

METHODS = ("erm", "rrr")

#: injected before the page's own content: records errors, then (on load) the state of every image
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  window.__errors.push(String(e.message || (e.target && (e.target.src || e.target.tagName)) || "error"));
}, true);
var consoleError = console.error;
console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, " "));
  consoleError.apply(console, arguments);
};
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; }).length;
  var root = document.documentElement;
  root.setAttribute("data-images", ok + "/" + imgs.length);
  root.setAttribute("data-svgs", String(document.querySelectorAll("svg polyline, svg circle").length));
  root.setAttribute("data-errors", String(window.__errors.length));
  root.setAttribute("data-probe", "done");
});
</script>"""

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    idx = make_idx_dir(tmp_path_factory.mktemp("mnist"), n_train=120, n_test=40)[0]
    out = tmp_path_factory.mktemp("bench")
    for method in METHODS:
        for seed in (0, 1):
            config = TrainConfig(data="decoy-mnist", data_options={"source": str(idx)}, method=method, seed=seed,
                                 epochs=2, threads=1)
            save_run(out / "runs" / f"decoy-mnist-{method}-seed{seed}", run_training(config))
    write_results_csv(out, collect_rows(out))
    write_summary(out, "rightreasons bench (test)")
    return write_report(out, "rightreasons bench (test)", images=4)


def expected_images():
    return len(attribution_kinds()) * (1 + len(METHODS))  # per kind: the input row and one row per method


def test_page_is_self_contained(report):
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "url(" not in html and "<link" not in html and "<script" not in html
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', html)) == expected_images()
    assert html.count("<svg") == 3  # three training-curve charts for the one dataset
    for method in METHODS:
        assert f"<td>{method}</td>" in html
    assert (report.parent / "saliency" / "decoy-mnist-gradient.png").is_file()


def read_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        assert (img.format, img.mode) == ("PNG", "RGB")
        return np.asarray(img)


def test_every_image_is_a_png_of_its_stated_size(report):
    pattern = r'<img [^>]*src="data:image/png;base64,([^"]+)" width="(\d+)" height="(\d+)"'
    images = re.findall(pattern, report.read_text())
    assert len(images) == expected_images()
    for data, width, height in images:
        pixels = read_png(base64.b64decode(data))
        assert pixels.shape == (int(height), int(width), 3)
        assert pixels.max() > pixels.min()  # not a blank strip
    grid = read_png((report.parent / "saliency" / "decoy-mnist-gradient.png").read_bytes())
    cell = int(images[0][2]) - 2 * 2  # a strip is one row of cells with a 2-pixel gap above and below
    assert grid.shape[0] == (1 + len(METHODS)) * (cell + 2) + 2  # the input row and one row per method
    assert grid.shape[1] > int(images[0][1])  # the strips plus a margin for the row labels


def test_renders_in_headless_chromium(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):  # .ci/run installs chromium: never let CI go green without the browser
            pytest.fail("chromium not found on PATH in CI (Debian: apt-get install -y chromium)")
        print("chromium not found on PATH: install Debian's `chromium` package to run this test")
        pytest.skip("chromium not found on PATH (Debian: apt-get install -y chromium)")
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("<head>", "<head>" + PROBE, 1))
    proc = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                           probed.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    root = re.search(r"<html[^>]*>", proc.stdout)
    assert root, proc.stdout[:500]
    attrs = dict(re.findall(r'data-([a-z]+)="([^"]*)"', root.group(0)))
    assert attrs.get("probe") == "done", (root.group(0), proc.stderr[-2000:])
    n = expected_images()
    assert attrs["images"] == f"{n}/{n}"
    assert int(attrs["svgs"]) > 0
    assert attrs["errors"] == "0"
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
