"""Speed of ``rightreasons annotate``: how long the page takes to load a 500-image folder, and how long a
mask save takes, server-side and over HTTP.

Generates a "patches" folder of --images PNGs (64 x 64) under --root, and for the save latency one folder
per --save-sizes side (a few images of that size), then serves each in a thread, as the command does:

- load, over HTTP: the page, its script and style sheet, the index JSON and the first image and mask,
  requested one after the other (what the page needs before it shows the first example);
- load, in headless Chromium (when ``chromium``, ``chromedriver`` and selenium are there): from the start
  of navigation to the first example drawn (the page's own ``performance.now()``), --browser-runs times;
- save: --saves saves of a changing mask, each the server's own time (its Server-Timing header: decoding
  and checking the PNG, history copy, atomic write with fsync) and the round trip.

Prints medians, 95th percentiles and maxima in ms.

    python benchmarks/bench_annotate.py --root /tmp/bench-annotate [--images 500] [--saves 50]
        [--save-sizes 64,512,1024] [--browser-runs 5]
"""

import argparse
import base64
import io
import json
import shutil
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from rightreasons.annotate import AnnotateApp, AnnotateServer, MaskStore
from rightreasons.data.examples import write_patches

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def folder_of(root: Path, images: int, size: int) -> Path:
    """A patches folder of ``images`` images of ``size`` pixels under ``root`` (written once)."""
    out = root / f"patches-{images}-{size}"
    if not (out / "labels.csv").is_file():
        n_val = n_test = max(2, images // 5)
        write_patches(out, size=size, n_train=images - n_val - n_test, n_val=n_val, n_test=n_test, overwrite=True)
    return out


def get(server: AnnotateServer, path: str, body=None) -> tuple[float, float, bytes, dict]:
    """(round trip ms, server ms, body, headers) of one request."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"X-Token": server.app.token, **({"Content-Type": "application/json"} if data else {})}
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=data, headers=headers)
    start = time.perf_counter()
    with OPENER.open(req, timeout=60) as res:
        out = res.read()
        timing = res.headers.get("Server-Timing", "")
        hdrs = dict(res.headers)
    total = (time.perf_counter() - start) * 1000
    server_ms = float(timing.split("dur=")[1]) if "dur=" in timing else float("nan")
    return total, server_ms, out, hdrs


def summary(values) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return f"median {statistics.median(values):7.1f}  p95 {p95:7.1f}  max {values[-1]:7.1f}"


def http_load(server: AnnotateServer, runs: int = 10) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        get(server, "/")
        get(server, "/page.js")
        get(server, "/page.css")
        _, _, index, _ = get(server, "/api/index")
        first = json.loads(index)["rows"][0]["file"]
        get(server, "/api/image?file=" + urllib.request.quote(first))
        get(server, "/api/mask?file=" + urllib.request.quote(first))
        times.append((time.perf_counter() - start) * 1000)
    return times


def browser_load(server: AnnotateServer, runs: int) -> list[float] | str:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        return "skipped (needs chromium and chromedriver)"
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        return "skipped (needs selenium)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--window-size=1400,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    times = []
    try:
        for _ in range(runs):
            driver.get("about:blank")
            driver.get(server.url)
            WebDriverWait(driver, 60, poll_frequency=0.02).until(
                lambda d: d.execute_script("return document.body.dataset.readyMs || ''"))
            times.append(float(driver.execute_script("return document.body.dataset.readyMs")))
            rows = driver.execute_script("return document.body.dataset.rows")
    finally:
        driver.quit()
    print(f"  (the page listed {rows} rows)")
    return times


def save_latency(folder: Path, saves: int) -> tuple[list[float], list[float], tuple[int, int]]:
    """Server and round-trip ms of ``saves`` saves of a changing mask on the first image of ``folder``."""
    with tempfile.TemporaryDirectory(prefix="bench-annotate-") as tmp:
        copy = Path(shutil.copytree(folder, Path(tmp) / "data"))
        server = AnnotateServer(AnnotateApp(MaskStore(copy))).start()
        try:
            _, _, index, _ = get(server, "/api/index")
            file = json.loads(index)["rows"][0]["file"]
            _, _, _, headers = get(server, "/api/mask?file=" + urllib.request.quote(file))
            version = headers["ETag"].strip('"')
            w, h = server.app.store.image_size(file)
            rng = np.random.default_rng(0)
            server_ms, total_ms = [], []
            for _ in range(saves):
                mask = np.zeros((h, w, 4), np.uint8)
                mask[..., 3] = 255
                y, x, r = rng.integers(0, h), rng.integers(0, w), max(2, min(w, h) // 8)
                mask[max(0, y - r):y + r, max(0, x - r):x + r, :3] = 255  # the page sends RGBA
                buf = io.BytesIO()
                Image.fromarray(mask).save(buf, format="PNG")
                body = {"file": file, "version": version, "png": base64.b64encode(buf.getvalue()).decode()}
                total, srv, out, _ = get(server, "/api/save", body)
                version = json.loads(out)["version"]
                server_ms.append(srv)
                total_ms.append(total)
        finally:
            server.stop()
    return server_ms, total_ms, (w, h)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, type=Path, help="Where the generated folders go (kept, reused).")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--saves", type=int, default=50)
    parser.add_argument("--save-sizes", default="64,512,1024", help="Image sides measured for saves.")
    parser.add_argument("--browser-runs", type=int, default=5)
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)

    folder = folder_of(args.root, args.images, 64)
    server = AnnotateServer(AnnotateApp(MaskStore(folder))).start()
    try:
        _, index_ms, index, _ = get(server, "/api/index")
        print(f"{args.images}-image folder: index JSON {len(index) / 1024:.0f} KiB, built in {index_ms:.1f} ms")
        print(f"load over HTTP (page, script, styles, index, first image and mask), ms: {summary(http_load(server))}")
        got = browser_load(server, args.browser_runs)
        if isinstance(got, str):
            print(f"load in headless Chromium: {got}")
        else:
            print(f"load in headless Chromium, navigation to the first example drawn, ms: {summary(got)}")
    finally:
        server.stop()

    for side in (int(s) for s in args.save_sizes.split(",")):
        small = folder_of(args.root, 6, side)
        server_ms, total_ms, (w, h) = save_latency(small, args.saves)
        print(f"save of a {w}x{h} mask, server-side ms: {summary(server_ms)}; round trip ms: {summary(total_ms)}")


if __name__ == "__main__":
    main()
