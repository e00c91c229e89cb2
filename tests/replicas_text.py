"""Miniature replicas of the text datasets' files as they are on disk (used by test_text_sources.py): a table
of your own text (CSV and JSONL), an ERASER task folder (movies layout, and a two-document task), HateXplain's
Data folder, e-SNLI's four CSV files and a real 20news-bydate.tar.gz; a handful of documents each, in the
exact formats, with the token sequences, labels and rationales the tests expect."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

# ------------------------------------------------------------------------------------------ text:PATH

#: (text, label, split, rationale_spans); "" = not annotated. The third text starts with spaces: spans
#: count them (the text is not stripped).
TABLE_ROWS = [
    ("Great film, loved it.", "pos", "train", "[[0, 5]]"),
    ("Awful plot; hated it.", "neg", "train", "[[6, 10], [12, 17]]"),
    ("Nice cast.", "pos", "train", ""),
    ("  Fine acting.", "pos", "val", "[[2, 6]]"),
    ("Dull, slow.", "neg", "val", ""),
    ("Boring, slow.", "neg", "test", "[]"),
    ("Lovely ending.", "pos", "test", "[[0, 6]]"),
]
TABLE_WORDS = {
    "train": [["great", "film", ",", "loved", "it", "."], ["awful", "plot", ";", "hated", "it", "."],
              ["nice", "cast", "."]],
    "val": [["fine", "acting", "."], ["dull", ",", "slow", "."]],
    "test": [["boring", ",", "slow", "."], ["lovely", "ending", "."]],
}
#: the token positions each row's spans mark (None: not annotated)
TABLE_RATIONALES = {"train": [[0], [1, 3], None], "val": [[0], None], "test": [[], [0]]}


def write_table_csv(path: Path, rows=TABLE_ROWS) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["text", "label", "split", "rationale_spans"])
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def write_table_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def table_jsonl_records() -> list[dict]:
    """TABLE_ROWS as JSONL records with integer labels (neg 0, pos 1) and rationale_tokens."""
    out = []
    positions = [p for split in ("train", "val", "test") for p in TABLE_RATIONALES[split]]
    for (text, label, split, _), tokens in zip(TABLE_ROWS, positions):
        record = {"text": text, "label": int(label == "pos"), "split": split}
        if tokens is not None:
            record["rationale_tokens"] = tokens
        out.append(record)
    return out


# ------------------------------------------------------------------------------------------ ERASER

#: docid -> document file text (one sentence per line, tokens joined by spaces; a blank line, capitals)
ERASER_DOCS = {
    "negR_000.txt": "this film is bad .\nthe plot is awful and boring .\n",
    "negR_001.txt": "a dull , tired film .\n",
    "posR_000.txt": "A great movie .\n\nI loved the acting .\n",
    "posR_001.txt": "what a wonderful surprise .\n",
    "negR_002.txt": "painful to watch .\n",
    "posR_002.txt": "a joy from start to finish .\n",
}
#: the flattened, lower-cased tokens of each document
ERASER_TOKENS = {
    "negR_000.txt": ["this", "film", "is", "bad", ".", "the", "plot", "is", "awful", "and", "boring", "."],
    "negR_001.txt": ["a", "dull", ",", "tired", "film", "."],
    "posR_000.txt": ["a", "great", "movie", ".", "i", "loved", "the", "acting", "."],
    "posR_001.txt": ["what", "a", "wonderful", "surprise", "."],
    "negR_002.txt": ["painful", "to", "watch", "."],
    "posR_002.txt": ["a", "joy", "from", "start", "to", "finish", "."],
}
QUERY = "What is the sentiment of this review?"


def evidence(docid: str, start: int, end: int) -> dict:
    text = " ".join(ERASER_DOCS[docid].split()[start:end]) if docid in ERASER_DOCS else ""
    return {"docid": docid, "end_sentence": -1, "end_token": end, "start_sentence": -1, "start_token": start,
            "text": text}


def annotation(aid: str, label: str, spans: list[tuple[int, int]], docids=None) -> dict:
    """An annotation line as ERASER writes it (sorted keys; each evidence its own group)."""
    return {"annotation_id": aid, "classification": label, "docids": docids,
            "evidences": [[evidence(aid, s, e)] for s, e in spans], "query": QUERY, "query_type": None}


#: split -> annotations: (annotation_id, label, evidence spans)
ERASER_SPLITS = {
    "train": [("negR_000.txt", "NEG", [(3, 4), (8, 9)]), ("posR_000.txt", "POS", [(1, 2), (5, 6)]),
              ("negR_001.txt", "NEG", [])],
    "val": [("posR_001.txt", "POS", [(2, 3)])],
    "test": [("negR_002.txt", "NEG", [(0, 1)]), ("posR_002.txt", "POS", [(1, 2)])],
}


def write_eraser(root: Path) -> Path:
    """A movies-layout ERASER folder: {train,val,test}.jsonl and docs/<docid>."""
    (root / "docs").mkdir(parents=True)
    for docid, text in ERASER_DOCS.items():
        (root / "docs" / docid).write_text(text, encoding="utf-8")
    for split, rows in ERASER_SPLITS.items():
        lines = [json.dumps(annotation(*row), sort_keys=True) for row in rows]
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_eraser_pairs(root: Path) -> Path:
    """A two-document ERASER task (e-SNLI's layout in ERASER: a premise and a hypothesis document per
    annotation, listed in ``docids``)."""
    docs = {"p1_premise": "a man sleeps .", "p1_hypothesis": "a person rests .",
            "p2_premise": "a dog runs .", "p2_hypothesis": "a cat sits .",
            "p3_premise": "kids play .", "p3_hypothesis": "children play ."}
    (root / "docs").mkdir(parents=True)
    for docid, text in docs.items():
        (root / "docs" / docid).write_text(text + "\n", encoding="utf-8")
    rows = {"train": [("p1", "entailment", [("p1_premise", 2, 3), ("p1_hypothesis", 2, 3)]),
                      ("p2", "contradiction", [("p2_hypothesis", 1, 2)])],
            "val": [("p3", "entailment", [("p3_hypothesis", 0, 1)])],
            "test": [("p3", "entailment", [("p3_premise", 0, 1)])]}
    for split, anns in rows.items():
        lines = []
        for aid, label, evs in anns:
            lines.append(json.dumps({
                "annotation_id": aid, "classification": label, "docids": [f"{aid}_premise", f"{aid}_hypothesis"],
                "evidences": [[{"docid": d, "start_token": s, "end_token": e, "start_sentence": -1,
                                "end_sentence": -1, "text": " ".join(docs[d].split()[s:e])} for d, s, e in evs]],
                "query": "", "query_type": None}, sort_keys=True))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------------ HateXplain

def post(tokens: list[str], labels: list[str], rationales: list[list[int]], post_id: str) -> dict:
    return {"post_id": post_id,
            "annotators": [{"label": lab, "annotator_id": k + 1, "target": ["None"]} for k, lab in enumerate(labels)],
            "rationales": rationales, "post_tokens": tokens}


#: post_id -> (tokens, annotator labels, rationales); the majority label and the majority rationale below
HATEXPLAIN_POSTS = {
    "1_gab": (["you", "people", "are", "vermin", "go", "away"], ["hatespeech", "hatespeech", "offensive"],
              [[0, 1, 0, 1, 0, 0], [0, 1, 0, 1, 1, 0], [0, 0, 0, 1, 0, 1]]),
    "2_twitter": (["what", "a", "lovely", "day"], ["normal", "normal", "offensive"], []),
    "3_gab": (["they", "are", "all", "the", "same"], ["hatespeech", "offensive", "normal"], []),
    "4_twitter": (["shut", "up", "<user>", "idiot"], ["offensive", "offensive", "normal"],
                  [[1, 1, 0, 1], [0, 0, 0, 1]]),
    "5_gab": (["Good", "Morning", "all"], ["normal", "normal", "normal"], []),
    "6_twitter": (["kill", "them", "all"], ["hatespeech", "hatespeech", "hatespeech"],
                  [[1, 1, 0], [1, 1, 1], [1, 0, 0]]),
    "7_gab": (["nice", "shoes"], ["normal", "normal", "hatespeech"], []),
    "8_twitter": (["stupid", "clown", "show"], ["offensive", "normal", "offensive"], [[1, 1, 0], [0, 1, 0]]),
    "9_gab": (["so", "what"], ["normal", "offensive", "hatespeech"], []),
    "10_gab": (["not", "in", "any", "division"], ["normal", "normal", "normal"], []),
}
HATEXPLAIN_DIVISIONS = {"train": ["1_gab", "2_twitter", "3_gab", "4_twitter", "5_gab"],
                        "val": ["6_twitter", "7_gab"], "test": ["8_twitter", "9_gab"]}


def write_hatexplain(root: Path, posts=None, divisions=None) -> Path:
    posts = HATEXPLAIN_POSTS if posts is None else posts
    root.mkdir(parents=True, exist_ok=True)
    data = {pid: post(*value, post_id=pid) for pid, value in posts.items()}
    (root / "dataset.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    (root / "post_id_divisions.json").write_text(json.dumps(divisions or HATEXPLAIN_DIVISIONS, indent=4),
                                                 encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------------ e-SNLI

ESNLI_TRAIN_HEADER = ["pairID", "gold_label", "Sentence1", "Sentence2", "Explanation_1", "WorkerId",
                      "Sentence1_marked_1", "Sentence2_marked_1", "Sentence1_Highlighted_1", "Sentence2_Highlighted_1"]
ESNLI_EVAL_HEADER = ["pairID", "gold_label", "Sentence1", "Sentence2"] + [
    name for k in (1, 2, 3) for name in (f"Explanation_{k}", f"Sentence1_marked_{k}", f"Sentence2_marked_{k}",
                                         f"Sentence1_Highlighted_{k}", f"Sentence2_Highlighted_{k}")]


def mark(sentence: str, indices: list[int]) -> tuple[str, str]:
    """(the marked sentence, the Highlighted cell) of the space-split words at ``indices``, as e-SNLI writes them."""
    words = sentence.split(" ")
    marked = " ".join(f"*{w}*" if i in indices else w for i, w in enumerate(words))
    return marked, ",".join(str(i) for i in indices) if indices else "{}"


def esnli_row(pair_id, label, s1, s2, highlights, header) -> list[str]:
    """A CSV row: ``highlights`` is one (premise indices, hypothesis indices) per annotator."""
    cells = {"pairID": pair_id, "gold_label": label, "Sentence1": s1, "Sentence2": s2, "WorkerId": "A1B2C3"}
    for k, (h1, h2) in enumerate(highlights, start=1):
        cells[f"Explanation_{k}"] = "Because."
        cells[f"Sentence1_marked_{k}"], cells[f"Sentence1_Highlighted_{k}"] = mark(s1, h1)
        cells[f"Sentence2_marked_{k}"], cells[f"Sentence2_Highlighted_{k}"] = mark(s2, h2)
    return [cells.get(name, "") for name in header]


#: (pairID, gold_label, premise, hypothesis, one (premise word indices, hypothesis word indices) per annotator)
ESNLI_FILES = {
    "esnli_train_1.csv": [
        ("1r1e", "entailment", "A man, in a red hat, sleeps.", "A person is sleeping.", [([1, 6], [3])]),
        ("2r1c", "contradiction", "Two dogs run.", "No animals move.", [([1], [0, 1])]),
        ("3r1n", "-", "A girl sings.", "She is happy.", [([], [2])]),
    ],
    "esnli_train_2.csv": [
        ("4r1n", "neutral", "A boy reads.", "The boy reads a comic.", [([], [4])]),
        ("5r1e", "entailment", "People dance outside.", "People move.", [([], [])]),
    ],
    "esnli_dev.csv": [
        ("6r1e", "entailment", "A man, in a red hat, sleeps.", "A man rests.",
         [([1, 6], [1]), ([1], [1, 2]), ([5], [2])]),
        ("7r1c", "contradiction", "A cat eats.", "A dog eats.", [([1], [1]), ([1], [1]), ([], [])]),
    ],
    "esnli_test.csv": [
        ("8r1n", "neutral", "Kids play.", "Kids play soccer.", [([], [2]), ([], [2]), ([0], [])]),
    ],
}


def write_esnli(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in ESNLI_FILES.items():
        header = ESNLI_TRAIN_HEADER if "train" in name else ESNLI_EVAL_HEADER
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(esnli_row(*row, header=header))
        (root / name).write_text(buf.getvalue(), encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------------ 20 Newsgroups

def newsgroup_post(sender: str, subject: str, body: str) -> bytes:
    """A post as in 20news-bydate: headers, a blank line, the body (latin-1 bytes)."""
    return (f"From: {sender}\nSubject: {subject}\nOrganization: Some University\nLines: 2\n\n{body}\n"
            ).encode("latin-1")


TRAIN, TEST = "20news-bydate-train", "20news-bydate-test"
ATHEISM, CHRISTIAN = "alt.atheism", "soc.religion.christian"
#: (split folder, group, number) -> post bytes; comp.graphics is a third group the default task skips
NEWSGROUP_POSTS = {
    (TRAIN, ATHEISM, 49960): newsgroup_post("mathew@mantis.co.uk", "Atheism", "No god is needed; caf\xe9 talk."),
    (TRAIN, ATHEISM, 51060): newsgroup_post("a@b.edu", "Re: evidence", "Show me evidence."),
    (TRAIN, ATHEISM, 51119): newsgroup_post("c@d.edu", "Re: morality", "Morals need no god."),
    (TRAIN, ATHEISM, 51120): newsgroup_post("e@f.edu", "Re: faith", "Faith is not proof."),
    (TRAIN, CHRISTIAN, 20491): newsgroup_post("g@h.org", "Prayer", "We pray daily."),
    (TRAIN, CHRISTIAN, 20492): newsgroup_post("i@j.org", "Re: church", "Church is home."),
    (TRAIN, CHRISTIAN, 20493): newsgroup_post("k@l.org", "Re: bible", "Read the bible."),
    (TRAIN, CHRISTIAN, 20494): newsgroup_post("m@n.org", "Grace", "Grace saves us."),
    (TRAIN, "comp.graphics", 37261): newsgroup_post("o@p.com", "Rendering", "Pixels and shaders."),
    (TEST, ATHEISM, 53068): newsgroup_post("q@r.edu", "Re: atheism", "No proof of god."),
    (TEST, CHRISTIAN, 20900): newsgroup_post("s@t.org", "Re: hope", "Hope in god."),
    (TEST, "comp.graphics", 38758): newsgroup_post("u@v.com", "Re: gifs", "Convert gifs."),
}


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, kind=tarfile.REGTYPE, link: str = ""):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if data is None and kind == tarfile.REGTYPE else kind
    info.mode = 0o755 if info.type == tarfile.DIRTYPE else 0o644
    info.linkname = link
    if info.type == tarfile.REGTYPE:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def write_newsgroups_tarball(path: Path, posts=None, extra=()) -> Path:
    """A real 20news-bydate.tar.gz: the folders as directory members, then the posts; ``extra`` members
    (name, data, kind, link) are added last."""
    posts = NEWSGROUP_POSTS if posts is None else posts
    with tarfile.open(path, "w:gz") as tar:
        folders = sorted({(f, g) for f, g, _ in posts})
        for folder in sorted({f for f, _ in folders}):
            _add(tar, f"{folder}/")
            for f, g in folders:
                if f == folder:
                    _add(tar, f"{folder}/{g}/")
                    for (f2, g2, n), data in sorted(posts.items()):
                        if (f2, g2) == (f, g):
                            _add(tar, f"{f}/{g}/{n}", data)
        for name, data, kind, link in extra:
            _add(tar, name, data, kind, link)
    return path


def write_newsgroups_folder(root: Path, posts=None) -> Path:
    """The extracted tarball: 20news-bydate-{train,test}/<group>/<number>."""
    posts = NEWSGROUP_POSTS if posts is None else posts
    for (folder, group, number), data in posts.items():
        (root / folder / group).mkdir(parents=True, exist_ok=True)
        (root / folder / group / str(number)).write_bytes(data)
    return root
