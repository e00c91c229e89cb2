"""The annotation server over real HTTP (urllib against a server on a free port in a thread): the token
is required everywhere, the index and the files it names are served, saves and undos round-trip with
versions (409 when stale), every malformed request is refused, and a run's predictions and saliency and
propose-masks' proposals reach the page. Timing is measured in benchmarks/bench_annotate.py, not here."""

import base64
import http.client
import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rightreasons.annotate import AnnotateApp, AnnotateServer, MaskStore, serve
from rightreasons.cli import main
from rightreasons.errors import UserError

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy, whatever the environment


def make_folder(root: Path, n: int = 6, w: int = 10, h: int = 7) -> Path:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    lines = ["file,label,split"]
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        lines.append(f"images/{i}.png,{'ab'[i % 2]},{('train', 'train', 'val', 'test')[i % 4]}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def png_b64(mask: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


class Client:
    def __init__(self, server: AnnotateServer):
        self.server, self.base = server, f"http://127.0.0.1:{server.port}"

    def call(self, method: str, path: str, body=None, token=None, headers=None):
        headers = dict(headers or {})
        if token is not False:
            headers["X-Token"] = token or self.server.app.token
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with OPENER.open(req, timeout=30) as res:
                return res.status, res.headers, res.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def json(self, method, path, body=None, **kw):
        status, headers, data = self.call(method, path, body, **kw)
        return status, json.loads(data)

    def mask(self, file):
        status, headers, data = self.call("GET", "/api/mask?file=" + urllib.request.quote(file))
        assert status == 200, data
        return decode(data), headers["ETag"].strip('"')


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "data")


@pytest.fixture
def client(folder):
    server = AnnotateServer(AnnotateApp(MaskStore(folder))).start()
    yield Client(server)
    server.stop()


ROUTES = [("GET", "/"), ("GET", "/page.js"), ("GET", "/page.css"), ("GET", "/api/index"),
          ("GET", "/api/image?file=images/0.png"), ("GET", "/api/mask?file=images/0.png"), ("GET", "/nope"),
          ("POST", "/api/save"), ("POST", "/api/undo"), ("POST", "/api/review")]


@pytest.mark.parametrize("method,path", ROUTES)
def test_every_route_needs_the_token(client, method, path):
    body = {"file": "images/0.png", "version": "x"} if method == "POST" else None
    for token in (False, "wrong-token", client.server.app.token[:-1]):
        status, _, data = client.call(method, path, body, token=token)
        assert status == 403, (path, token)
        assert "token" in json.loads(data)["error"]
    status, _, _ = client.call(method, path + ("&" if "?" in path else "?") + "token=nope", body, token=False)
    assert status == 403


def test_the_token_works_in_the_url_and_the_header(client):
    status, headers, data = client.call("GET", "/?token=" + client.server.app.token, token=False)
    assert status == 200 and data.startswith(b"<!DOCTYPE html>")
    assert client.server.url == f"http://127.0.0.1:{client.server.port}/?token={client.server.app.token}"
    assert len(client.server.app.token) >= 40
    assert client.call("GET", "/api/index")[0] == 200


def test_a_foreign_host_header_is_refused(client):
    conn = http.client.HTTPConnection("127.0.0.1", client.server.port, timeout=10)
    conn.request("GET", "/api/index", headers={"Host": f"evil.example:{client.server.port}",
                                               "X-Token": client.server.app.token})
    assert conn.getresponse().status == 403
    conn.close()


def test_only_loopback_is_served(folder):
    app = AnnotateApp(MaskStore(folder))
    for host in ("0.0.0.0", "::", "192.168.1.2", ""):
        with pytest.raises(UserError, match="127.0.0.1 only"):
            AnnotateServer(app, host=host)
    server = AnnotateServer(app)
    try:
        assert server.httpd.server_address[0] == "127.0.0.1"
        with pytest.raises(UserError, match="cannot listen"):
            AnnotateServer(app, port=server.port)
    finally:
        server.httpd.server_close()


def test_the_page_loads_nothing_from_elsewhere(client):
    status, headers, page = client.call("GET", "/")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"
    texts = [page.decode()] + [client.call("GET", p)[2].decode() for p in ("/page.js", "/page.css")]
    for text in texts:
        assert not re.search(r"(https?:)?//[a-z0-9]", text.replace("://127.0.0.1", "")), "an external URL"
        assert "@import" not in text
    assert f'src="page.js?token={client.server.app.token}"' in texts[0]


def test_index_lists_every_row(client, folder):
    status, index = client.json("GET", "/api/index")
    assert status == 200
    assert [r["file"] for r in index["rows"]] == [f"images/{i}.png" for i in range(6)]
    assert index["rows"][2] == {"file": "images/2.png", "label": "a", "split": "val", "mask": False}
    assert index["run"] is None and index["proposals"] is None


def test_images_and_empty_masks_are_served_at_the_image_size(client, folder):
    status, headers, data = client.call("GET", "/api/image?file=images/3.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert data == (folder / "images/3.png").read_bytes()
    mask, version = client.mask("images/3.png")
    assert mask.shape == (7, 10) and not mask.any() and len(version) == 32


def test_save_and_undo_round_trip(client, folder):
    file = "images/1.png"
    _, version = client.mask(file)
    m = np.zeros((7, 10), bool)
    m[2:5, 3:8] = True
    status, out = client.json("POST", "/api/save", {"file": file, "version": version, "png": png_b64(m)})
    assert status == 200, out
    assert out["mask"] == "masks/1.png" and out["undo"] == 1
    served, new_version = client.mask(file)
    assert new_version == out["version"] != version
    assert np.array_equal(served == 255, m)
    assert np.array_equal(decode((folder / "masks/1.png").read_bytes()) == 255, m)
    assert client.json("GET", "/api/index")[1]["rows"][1]["mask"] is True

    # a second tab still holding the first version is refused, and the saved mask stays
    status, err = client.json("POST", "/api/save", {"file": file, "version": version, "png": png_b64(~m)})
    assert status == 409 and err["conflict"] is True and "reload" in err["error"]
    assert np.array_equal(client.mask(file)[0] == 255, m)
    assert client.json("POST", "/api/undo", {"file": file, "version": version})[0] == 409

    status, out = client.json("POST", "/api/undo", {"file": file, "version": new_version})
    assert status == 200 and out["undo"] == 0
    served, after_undo = client.mask(file)
    assert not served.any() and after_undo == version
    assert not (folder / "masks/1.png").exists()
    assert (folder / ".annotate/history/masks/1.2.png").is_file()  # what the undo replaced is kept
    status, err = client.json("POST", "/api/undo", {"file": file, "version": after_undo})
    assert status == 404 and "no saved change" in err["error"]


def _save(file="images/0.png", version="v", png=None):
    return {"file": file, "version": version, "png": png if png is not None else png_b64(np.zeros((7, 10), bool))}


@pytest.mark.parametrize("body,status,message", [
    (b"not json", 400, "not JSON"),
    (b"\xff\xfe", 400, "not JSON"),
    ([1, 2], 400, "exactly the keys"),
    ({"file": "images/0.png", "png": ""}, 400, "exactly the keys"),
    ({**_save(), "path": "/etc/passwd"}, 400, "exactly the keys"),
    ({**_save(), "version": 3}, 400, "'version' must be a str"),
    (_save(png="not base64!"), 400, "base64"),
    (_save(png=base64.b64encode(b"GIF89a").decode()), 400, "not a readable PNG"),
    (_save(file="../labels.csv"), 404, "not a row"),
    (_save(file="images/../../etc/passwd"), 404, "not a row"),
    (_save(file="x" * 5000), 400, "too long"),
])
def test_malformed_saves_are_refused(client, folder, body, status, message):
    labels = (folder / "labels.csv").read_bytes()
    got, _, data = client.call("POST", "/api/save", body)
    assert got == status, data
    assert message in json.loads(data)["error"]
    assert (folder / "labels.csv").read_bytes() == labels and not (folder / "masks").exists()


def test_a_mask_of_the_wrong_size_or_values_is_refused(client):
    _, version = client.mask("images/0.png")
    for mask, message in ((np.zeros((10, 7), bool), "mask is 7x10"), (np.zeros((7, 11), bool), "mask is 11x7")):
        status, err = client.json("POST", "/api/save", _save(version=version, png=png_b64(mask)))
        assert status == 400 and message in err["error"]
    grey = io.BytesIO()
    Image.fromarray(np.full((7, 10), 77, np.uint8)).save(grey, format="PNG")
    grey_b64 = base64.b64encode(grey.getvalue()).decode()
    status, err = client.json("POST", "/api/save", _save(version=version, png=grey_b64))
    assert status == 400 and "other than 0 and 255" in err["error"]


def test_request_shape_and_size_are_bounded(client):
    status, _, _ = client.call("POST", "/api/save", b"{}", headers={"Content-Type": "text/plain"})
    assert status == 415
    conn = http.client.HTTPConnection("127.0.0.1", client.server.port, timeout=10)
    conn.putrequest("POST", "/api/save")
    conn.putheader("X-Token", client.server.app.token)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(10**9))
    conn.endheaders()
    assert conn.getresponse().status == 413  # refused before a byte of the body is read
    conn.close()
    assert client.call("PUT", "/api/save", b"{}")[0] == 405
    assert client.call("GET", "/api/mask")[0] == 400
    assert client.call("GET", "/api/mask?file=a&file=b")[0] == 400
    assert client.call("GET", "/api/mask?file=../labels.csv")[0] == 404
    assert client.call("GET", "/api/proposal?file=images/0.png")[0] == 404
    assert client.call("GET", "/api/saliency?file=images/0.png")[0] == 404
    assert client.call("POST", "/api/review", {"file": "images/0.png", "decision": "accepted"})[0] == 404


# ------------------------------------------------------------------------------------------ --run, --proposals


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A patches folder, an ERM run on it, and its proposals (written by propose-masks)."""
    from rightreasons.data.examples import write_patches
    from rightreasons.train import TrainConfig, run_training, save_run

    root = tmp_path_factory.mktemp("trained")
    data = write_patches(root / "data", size=16, n_train=16, n_val=6, n_test=8)
    config = TrainConfig(data=f"folder:{data}", method="erm", model="mlp", epochs=1, threads=1, batch_size=8)
    run = save_run(root / "run", run_training(config))
    assert main(["propose-masks", str(run), "--out", str(root / "props"), "--select", "all", "--threads", "1"]) == 0
    return data, run, root / "props"


@pytest.fixture
def run_client(trained, tmp_path):
    import shutil

    data, run, props = trained
    copy = Path(shutil.copytree(data, tmp_path / "data"))
    server = serve(f"folder:{copy}", run=run, proposals=props).start()
    yield Client(server), copy, run
    server.stop()


def test_predictions_and_saliency_of_a_run(run_client):
    client, folder, run = run_client
    from rightreasons.train.run import load_run

    status, index = client.json("GET", "/api/index")
    rows = index["rows"]
    assert index["run"]["method"] == "erm" and index["run"]["classes"] == ["benign", "malignant"]
    # the predictions are the model's own, row by row
    model, _, data = load_run(run)
    with torch.no_grad():
        predicted = model(data.test.x).argmax(1)
    test_rows = [r for r in rows if r["split"] == "test"]
    assert [r["pred"] for r in test_rows] == [["benign", "malignant"][int(k)] for k in predicted]
    assert all(r["correct"] == (r["pred"] == r["label"]) for r in rows)
    assert all(0 <= r["share_mask"] <= 1 for r in rows if r["mask"])
    status, headers, heat = client.call("GET", "/api/saliency?file=" + rows[0]["file"])
    assert status == 200
    with Image.open(io.BytesIO(heat)) as im:
        assert im.mode == "RGBA" and im.size == (16, 16)
        assert np.asarray(im)[..., 3].max() > 0


def test_a_save_updates_the_share_inside_the_mask(run_client):
    client, folder, _ = run_client
    file = "images/0003.png"
    _, version = client.mask(file)
    status, out = client.json("POST", "/api/save", {"file": file, "version": version,
                                                      "png": png_b64(np.ones((16, 16), bool))})
    assert status == 200 and out["share_mask"] == pytest.approx(1.0)
    status, out = client.json("POST", "/api/save", {"file": file, "version": out["version"],
                                                      "png": png_b64(np.zeros((16, 16), bool))})
    assert out["share_mask"] == 0.0
    rows = {r["file"]: r for r in client.json("GET", "/api/index")[1]["rows"]}
    assert rows[file]["share_mask"] == 0.0


def test_proposals_are_shown_and_reviewed(run_client, trained):
    client, folder, _ = run_client
    props = trained[2]
    rows = client.json("GET", "/api/index")[1]["rows"]
    with_proposal = [r for r in rows if r["proposal"]]
    assert {r["split"] for r in with_proposal} == {"train"} and len(with_proposal) == 16
    assert all(r["review"] == "" and 0 <= r["share_proposal"] <= 1 for r in with_proposal)
    file = with_proposal[0]["file"]
    status, _, data = client.call("GET", "/api/proposal?file=" + file)
    assert status == 200
    expected = decode((props / "masks" / Path(file).name).read_bytes()) >= 128
    assert np.array_equal(decode(data) == 255, expected)
    assert client.call("GET", "/api/proposal?file=" + rows[-1]["file"])[0] == 404  # a test row: none
    status, out = client.json("POST", "/api/review", {"file": file, "decision": "rejected"})
    assert status == 200
    assert json.loads((folder / ".annotate/reviews.json").read_text()) == {file: "rejected"}
    assert client.json("GET", "/api/index")[1]["rows"][0]["review"] == "rejected"
    assert client.json("POST", "/api/review", {"file": file, "decision": "maybe"})[0] == 400
    assert client.json("POST", "/api/review", {"file": rows[-1]["file"], "decision": "accepted"})[0] == 400


# ------------------------------------------------------------------------------------------ the command


def test_the_command_refuses_what_is_not_an_image_folder(tmp_path, capsys):
    assert main(["annotate", "isic:/data/isic"]) == 2
    assert "annotate reads image folders" in capsys.readouterr().err
    assert main(["annotate", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["annotate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no labels.csv" in err and len(err.strip().splitlines()) == 1


def test_the_command_serves_until_interrupted(folder):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rightreasons", "annotate", f"folder:{folder}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        url, deadline = None, time.monotonic() + 120
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            found = re.search(r"http://127\.0\.0\.1:\d+/\?token=[\w-]+", line)
            url = found.group(0) if found else None
        assert url, proc.stderr.read() if proc.poll() is not None else "no URL printed"
        with OPENER.open(url, timeout=30) as res:
            assert res.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            OPENER.open(url.split("?")[0] + "api/index", timeout=30)
        assert refused.value.code == 403
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
