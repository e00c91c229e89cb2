"""Text from files: text:PATH (CSV, JSONL), eraser:, hatexplain:, esnli: and newsgroups: on miniature replicas
of their real files: exact tokens, labels, splits and rationale -> mask mappings (the ``relevant`` inversion,
padding never masked), HateXplain's majority and ties, e-SNLI's word -> token mapping, ERASER's evidence
offsets, TF-IDF against a slow float64 reference, hostile tarballs refused, one-line errors naming the file
and line for malformed files, and one training run end to end."""

import json
import math
import shutil
import tarfile

import numpy as np
import pytest
import torch

import replicas_text as rep
from rightreasons.data import default_model, load_dataset
from rightreasons.data.text import TextDataset, tokenize
from rightreasons.data.text.newsgroups import tfidf, tfidf_vocabulary
from rightreasons.data.text.table import SEP
from rightreasons.errors import DataError, UserError


def rows_of(mask: torch.Tensor) -> list[list[int]]:
    return [torch.nonzero(row).flatten().tolist() for row in mask]


def words_of(ds: TextDataset) -> list[list[str]]:
    return [ds.vocab.decode(row[row != 0].tolist()) for row in ds.ids]


def check_invariants(ds: TextDataset) -> None:
    """Masks and rationales never on padding; an un-annotated example has an empty mask."""
    pad = ds.ids == 0
    assert not bool((ds.mask & pad).any())
    if ds.rationale is not None:
        assert not bool((ds.rationale & pad).any())
    assert not bool(ds.mask[~ds.has_mask].any())


def raises_one_line(exc_type, call, *parts):
    with pytest.raises(exc_type) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for part in parts:
        assert str(part) in message, (part, message)
    return message


# ------------------------------------------------------------------------------------------ text:PATH


@pytest.fixture
def table_csv(tmp_path):
    return rep.write_table_csv(tmp_path / "reviews.csv")


def test_text_csv_tokens_labels_splits_and_ignore_masks(table_csv):
    data = load_dataset(f"text:{table_csv}")
    assert data.info["classes"] == ["neg", "pos"] and data.info["split"] == "split column"
    assert default_model(f"text:{table_csv}") == "text-cnn"
    for split, expected in rep.TABLE_WORDS.items():
        ds = data.split(split)
        assert ds.words == expected  # min_count 1 by default: every training word is in the vocabulary
        assert ds.class_names == ["neg", "pos"]
        check_invariants(ds)
    assert data.train.y.tolist() == [1, 0, 1] and data.val.y.tolist() == [1, 0] and data.test.y.tolist() == [0, 1]
    assert words_of(data.train) == rep.TABLE_WORDS["train"]
    # ignore (the default for text:PATH): mask = the marked tokens; an empty cell is not annotated
    assert rows_of(data.train.mask) == [[0], [1, 3], []]
    assert data.train.has_mask.tolist() == [True, True, False]
    assert rows_of(data.val.mask) == [[0], []]  # "  Fine acting.": the span counts the leading spaces
    assert data.val.has_mask.tolist() == [True, False]
    assert data.test.has_mask.tolist() == [True, True] and rows_of(data.test.mask) == [[], [0]]  # "[]" annotates
    assert rows_of(data.train.rationale) == [[0], [1, 3], []]
    assert data.info["annotated"] == {"train": 2, "val": 1, "test": 2}


def test_text_relevant_inverts_annotated_rows_only_and_never_masks_padding(table_csv):
    data = load_dataset(f"text:{table_csv}", rationale="relevant")
    train = data.train
    assert train.ids.shape[1] == 6 and bool((train.ids[2] == 0).any())  # the third row is padded
    assert rows_of(train.mask) == [[1, 2, 3, 4, 5], [0, 2, 4, 5], []]
    assert rows_of(train.rationale) == [[0], [1, 3], []]
    assert train.has_mask.tolist() == [True, True, False]
    # an annotation marking nothing relevant says nothing: not annotated (and never "ignore everything")
    assert data.test.has_mask.tolist() == [False, True] and rows_of(data.test.mask) == [[], [1, 2]]
    for split in ("train", "val", "test"):
        check_invariants(data.split(split))
    cut = load_dataset(f"text:{table_csv}", rationale="relevant", max_length=2)
    assert rows_of(cut.train.mask) == [[1], [0], []]  # "hated" (3) beyond the cut; "plot" (1) kept
    assert cut.train.ids.shape[1] == 2


def test_text_jsonl_with_token_positions_and_integer_labels_matches_csv(table_csv, tmp_path):
    path = rep.write_table_jsonl(tmp_path / "reviews.jsonl", rep.table_jsonl_records())
    a = load_dataset(f"text:{path}", rationale="relevant")
    b = load_dataset(f"text:{table_csv}", rationale="relevant")
    assert a.info["classes"] == ["0", "1"]
    for split in ("train", "val", "test"):
        assert torch.equal(a.split(split).ids, b.split(split).ids)
        assert torch.equal(a.split(split).mask, b.split(split).mask)
        assert torch.equal(a.split(split).has_mask, b.split(split).has_mask)
    other = tmp_path / "reviews.txt"
    shutil.copy(path, other)
    assert torch.equal(load_dataset(f"text:{other}", format="jsonl").train.ids, a.train.ids)
    raises_one_line(UserError, lambda: load_dataset(f"text:{other}"), "format=csv")


def test_text_without_split_column_is_a_seeded_stratified_split_with_groups(tmp_path):
    records = [{"text": f"doc {i} word{i % 3}", "label": ["a", "b"][i % 2], "group": f"g{i % 4}"}
               for i in range(20)]
    path = rep.write_table_jsonl(tmp_path / "docs.jsonl", records)
    data = load_dataset(f"text:{path}", seed=3)
    assert {s: len(data.split(s)) for s in ("train", "val", "test")} == {"train": 12, "val": 4, "test": 4}
    assert data.test.y.tolist().count(0) == 2 and data.val.y.tolist().count(1) == 2  # round(0.15 * 10) per class
    assert data.info["groups"] == ["g0", "g1", "g2", "g3"] and data.train.num_groups == 4
    assert not bool(data.train.has_mask.any()) and data.train.rationale is None
    again = load_dataset(f"text:{path}", seed=3)
    other = load_dataset(f"text:{path}", seed=4)
    assert torch.equal(again.test.ids, data.test.ids)
    assert not torch.equal(other.test.ids, data.test.ids)
    for ds in (data.train, data.val, data.test):  # each example's group is its own row's
        for words, g in zip(ds.words, ds.group.tolist()):
            assert int(words[1]) % 4 == g


def test_text_malformed_files_are_one_line_errors_naming_file_line_and_column(tmp_path):
    raises_one_line(DataError, lambda: load_dataset(f"text:{tmp_path / 'none.csv'}"), "none.csv", "no such file")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "label": 1}\n{"text": "broken", "label": \n')
    raises_one_line(DataError, lambda: load_dataset(f"text:{bad}"), "bad.jsonl line 2", "invalid JSON")
    rows = list(rep.TABLE_ROWS)
    rows[1] = ("Awful plot; hated it.", "neg", "train", "[[6, 99]]")
    path = rep.write_table_csv(tmp_path / "span.csv", rows)
    raises_one_line(DataError, lambda: load_dataset(f"text:{path}"), "span.csv row 3", "'rationale_spans'", "99")
    rows[1] = ("Awful plot; hated it.", "neg", "train", "[[6, 10")
    path = rep.write_table_csv(tmp_path / "json.csv", rows)
    raises_one_line(DataError, lambda: load_dataset(f"text:{path}"), "json.csv row 3", "invalid JSON")
    path = rep.write_table_csv(tmp_path / "labels.csv")
    raises_one_line(DataError, lambda: load_dataset(f"text:{path}", classes="pos,meh"), "labels.csv row 3",
                    "'neg' is not one of the classes")
    records = rep.table_jsonl_records()
    records[0]["rationale_tokens"] = [0, 6]
    path = rep.write_table_jsonl(tmp_path / "tokens.jsonl", records)
    raises_one_line(DataError, lambda: load_dataset(f"text:{path}"), "tokens.jsonl line 1", "'rationale_tokens'",
                    "position 6")
    records[0]["rationale_tokens"] = [0]
    records[0]["rationale_spans"] = [[0, 1]]
    path = rep.write_table_jsonl(tmp_path / "both.jsonl", records)
    raises_one_line(DataError, lambda: load_dataset(f"text:{path}"), "both.jsonl line 1", "both")
    records = rep.table_jsonl_records()
    records[2]["label"] = True
    path = rep.write_table_jsonl(tmp_path / "bool.jsonl", records)
    raises_one_line(DataError, lambda: load_dataset(f"text:{path}"), "bool.jsonl line 3", "'label'")
    records[2]["label"] = "x"
    path = rep.write_table_jsonl(tmp_path / "mixed.jsonl", records)
    raises_one_line(DataError, lambda: load_dataset(f"text:{path}"), "mixed.jsonl line 3", "not an integer")
    path = rep.write_table_csv(tmp_path / "ok.csv")
    raises_one_line(UserError, lambda: load_dataset(f"text:{path}", rationale="evidence"), "rationale")
    raises_one_line(UserError, lambda: load_dataset(f"text:{path}", max_length=0), "max_length")
    raises_one_line(UserError, lambda: load_dataset(f"text:{path}", colour="red"), "unknown option", "colour")
    raises_one_line(DataError, lambda: load_dataset(f"text:{path}", text_column="body"), "ok.csv", "'body'",
                    "text_column")


def test_training_a_text_model_on_your_own_table_end_to_end(tmp_path):
    from rightreasons.train.config import TrainConfig
    from rightreasons.train.run import run_training

    rows = [(f"{w} movie number {i}.", label, split, "[[0, %d]]" % len(w))
            for i, (w, label, split) in enumerate([("great", "pos", "train"), ("awful", "neg", "train"),
                                                   ("superb", "pos", "train"), ("boring", "neg", "train"),
                                                   ("great", "pos", "val"), ("awful", "neg", "val"),
                                                   ("superb", "pos", "test"), ("boring", "neg", "test")])]
    path = rep.write_table_csv(tmp_path / "train.csv", rows)
    config = TrainConfig(data=f"text:{path}", model="text-bag", method="rrr", epochs=1, batch_size=4)
    out = run_training(config)
    assert 0 <= out.metrics["test"]["accuracy"] <= 1
    assert not math.isnan(out.metrics["test"]["mask_gradient_share"])


# ------------------------------------------------------------------------------------------ ERASER


@pytest.fixture
def eraser(tmp_path):
    return rep.write_eraser(tmp_path / "movies")


def test_eraser_uses_the_documents_tokens_and_exact_evidence_offsets(eraser):
    data = load_dataset(f"eraser:{eraser}")
    assert data.info["classes"] == ["NEG", "POS"] and data.info["evidence_text_mismatch"] == 0
    assert data.train.words == [rep.ERASER_TOKENS["negR_000.txt"], rep.ERASER_TOKENS["posR_000.txt"],
                                rep.ERASER_TOKENS["negR_001.txt"]]
    assert data.train.y.tolist() == [0, 1, 0] and data.test.y.tolist() == [0, 1]
    # evidence [3, 4) "bad" and [8, 9) "awful", counted over the flattened document (line 2 starts at 5)
    assert rows_of(data.train.rationale) == [[3, 8], [1, 5], []]
    assert [data.train.words[0][i] for i in (3, 8)] == ["bad", "awful"]
    assert [data.train.words[1][i] for i in (1, 5)] == ["great", "loved"]
    # relevant (the default): mask = the document's other tokens; no evidence = not annotated
    assert data.train.has_mask.tolist() == [True, True, False]
    lengths = data.train.lengths.tolist()
    assert rows_of(data.train.mask)[0] == [i for i in range(lengths[0]) if i not in (3, 8)]
    assert rows_of(data.train.mask)[1] == [i for i in range(lengths[1]) if i not in (1, 5)]
    assert rows_of(data.train.mask)[2] == []
    for split in ("train", "val", "test"):
        check_invariants(data.split(split))
    ignore = load_dataset(f"eraser:{eraser}", rationale="ignore")
    assert rows_of(ignore.train.mask) == [[3, 8], [1, 5], []]
    assert ignore.train.has_mask.tolist() == [True, True, False]  # ignore: no evidence is still no annotation


def test_eraser_query_goes_first_and_shifts_the_evidence(eraser):
    data = load_dataset(f"eraser:{eraser}", query=True)
    query = rep.QUERY.lower().split()
    assert data.train.words[0][:len(query) + 1] == [*query, SEP]
    shift = len(query) + 1
    assert rows_of(data.train.rationale)[0] == [3 + shift, 8 + shift]
    mask = rows_of(data.train.mask)[0]
    assert not set(mask) & set(range(shift))  # the query and the separator are never masked
    assert set(mask) == set(range(shift, data.train.lengths[0].item())) - {3 + shift, 8 + shift}


def test_eraser_joins_listed_documents_with_a_separator(tmp_path):
    root = rep.write_eraser_pairs(tmp_path / "pairs")
    data = load_dataset(f"eraser:{root}", min_count=1)
    assert data.train.words[0] == ["a", "man", "sleeps", ".", SEP, "a", "person", "rests", "."]
    assert rows_of(data.train.rationale) == [[2, 7], [6]]
    assert 4 not in rows_of(data.train.mask)[0]  # the separator is never masked
    assert data.info["classes"] == ["contradiction", "entailment"]
    # without a docids list, evidence from two documents cannot be joined: refused
    lines = (root / "train.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    record["docids"] = None
    (root / "train.jsonl").write_text("\n".join([json.dumps(record), lines[1]]) + "\n")
    raises_one_line(DataError, lambda: load_dataset(f"eraser:{root}"), "train.jsonl line 1", "2 documents")


def test_eraser_malformed_files_are_one_line_errors(eraser):
    train = eraser / "train.jsonl"
    lines = train.read_text().splitlines()
    record = json.loads(lines[1])
    record["evidences"][0][0]["end_token"] = 10  # posR_000 has 9 tokens
    train.write_text("\n".join([lines[0], json.dumps(record), lines[2]]) + "\n")
    raises_one_line(DataError, lambda: load_dataset(f"eraser:{eraser}"), "train.jsonl line 2", "beyond its 9 tokens")
    train.write_text("\n".join([lines[0], lines[1][:-5], lines[2]]) + "\n")
    raises_one_line(DataError, lambda: load_dataset(f"eraser:{eraser}"), "train.jsonl line 2", "invalid JSON")
    train.write_text("\n".join(lines) + "\n")
    val = eraser / "val.jsonl"
    val.write_text(val.read_text().replace('"POS"', '"MAYBE"'))
    raises_one_line(DataError, lambda: load_dataset(f"eraser:{eraser}"), "val.jsonl line 1", "'MAYBE'")
    val.write_text(val.read_text().replace('"MAYBE"', '"POS"'))
    (eraser / "docs" / "negR_002.txt").unlink()
    raises_one_line(DataError, lambda: load_dataset(f"eraser:{eraser}"), "test.jsonl line 1", "negR_002.txt",
                    "no such file")
    test = eraser / "test.jsonl"
    saved = test.read_text()
    test.unlink()
    raises_one_line(DataError, lambda: load_dataset(f"eraser:{eraser}"), "test.jsonl", "no such file")
    test.write_text(saved)
    record = json.loads(lines[2])  # no evidence: the annotation_id names the document
    record["annotation_id"] = "../../etc/passwd"
    train.write_text("\n".join([lines[0], json.dumps(record)]) + "\n")
    raises_one_line(DataError, lambda: load_dataset(f"eraser:{eraser}"), "train.jsonl line 2", "plain file name")


# ------------------------------------------------------------------------------------------ HateXplain


@pytest.fixture
def hatexplain(tmp_path):
    return rep.write_hatexplain(tmp_path / "Data")


def test_hatexplain_majority_labels_drop_ties_and_majority_rationales(hatexplain):
    data = load_dataset(f"hatexplain:{hatexplain}")
    assert data.info["classes"] == ["hatespeech", "normal", "offensive"]
    assert data.info["dropped_no_majority"] == {"train": 1, "val": 0, "test": 1}  # 3_gab and 9_gab
    assert data.info["posts_in_no_division"] == 1
    assert data.train.words == [["you", "people", "are", "vermin", "go", "away"], ["what", "a", "lovely", "day"],
                                ["shut", "up", "<user>", "idiot"], ["good", "morning", "all"]]
    assert data.train.y.tolist() == [0, 1, 2, 1] and data.val.y.tolist() == [0, 1] and data.test.y.tolist() == [2]
    # rationale: tokens marked by more than half of the annotators who gave one (2 of 3; 2 of 2)
    assert rows_of(data.train.rationale) == [[1, 3], [], [3], []]
    assert data.train.has_mask.tolist() == [True, False, True, False]  # normal posts carry none
    assert rows_of(data.train.mask) == [[0, 2, 4, 5], [], [0, 1, 2], []]  # relevant: the other tokens
    assert rows_of(data.val.rationale) == [[0, 1], []] and rows_of(data.test.rationale) == [[1]]
    for split in ("train", "val", "test"):
        check_invariants(data.split(split))
    union = load_dataset(f"hatexplain:{hatexplain}", rationale_rule="union", rationale="ignore")
    assert rows_of(union.train.mask) == [[1, 3, 4, 5], [], [0, 1, 3], []]
    assert rows_of(union.test.mask) == [[0, 1]]


def test_hatexplain_two_classes_from_the_three_class_majority(hatexplain):
    data = load_dataset(f"hatexplain:{hatexplain}", classes=2)
    assert data.info["classes"] == ["non-toxic", "toxic"]
    assert data.train.y.tolist() == [1, 0, 1, 0] and data.val.y.tolist() == [1, 0] and data.test.y.tolist() == [1]
    assert data.info["dropped_no_majority"] == {"train": 1, "val": 0, "test": 1}  # hate/offensive/normal: dropped


def test_hatexplain_malformed_files_are_one_line_errors(tmp_path):
    posts = dict(rep.HATEXPLAIN_POSTS)
    tokens, labels, rationales = posts["4_twitter"]
    posts["4_twitter"] = (tokens, labels, [rationales[0], rationales[1][:3]])
    root = rep.write_hatexplain(tmp_path / "short", posts)
    raises_one_line(DataError, lambda: load_dataset(f"hatexplain:{root}"), "dataset.json post '4_twitter'",
                    "rationale 1 has 3 entries for 4 post_tokens")
    posts = dict(rep.HATEXPLAIN_POSTS)
    posts["5_gab"] = (posts["5_gab"][0], ["normal", "spam", "normal"], [])
    root = rep.write_hatexplain(tmp_path / "label", posts)
    raises_one_line(DataError, lambda: load_dataset(f"hatexplain:{root}"), "dataset.json post '5_gab'", "'spam'")
    divisions = {**rep.HATEXPLAIN_DIVISIONS, "test": ["8_twitter", "404_gab"]}
    root = rep.write_hatexplain(tmp_path / "division", divisions=divisions)
    raises_one_line(DataError, lambda: load_dataset(f"hatexplain:{root}"), "post_id_divisions.json", "'404_gab'")
    root = rep.write_hatexplain(tmp_path / "json")
    (root / "dataset.json").write_text((root / "dataset.json").read_text()[:-3])
    raises_one_line(DataError, lambda: load_dataset(f"hatexplain:{root}"), "dataset.json", "invalid JSON", "line")
    (root / "dataset.json").unlink()
    raises_one_line(DataError, lambda: load_dataset(f"hatexplain:{root}"), "dataset.json", "no such file")
    raises_one_line(UserError, lambda: load_dataset(f"hatexplain:{tmp_path / 'short'}", classes=4), "classes")


# ------------------------------------------------------------------------------------------ e-SNLI


@pytest.fixture
def esnli(tmp_path):
    return rep.write_esnli(tmp_path / "esnli")


def test_esnli_pairs_and_the_word_to_token_mapping_on_punctuation(esnli):
    data = load_dataset(f"esnli:{esnli}", min_count=1)
    assert data.info["classes"] == ["entailment", "neutral", "contradiction"]
    assert data.info["dropped_no_gold_label"] == {"train": 1, "val": 0, "test": 0}
    first = data.train.words[0]
    assert first == ["a", "man", ",", "in", "a", "red", "hat", ",", "sleeps", ".", SEP, "a", "person", "is",
                     "sleeping", "."]
    # highlighted words "man," and "sleeps." (indices 1 and 6 of the space-split premise) -> their tokens,
    # punctuation included; "sleeping." (index 3 of the hypothesis) after the separator
    assert rows_of(data.train.rationale) == [[1, 2, 8, 9, 14, 15], [1, 5, 6], [9, 10], []]
    assert data.train.y.tolist() == [0, 2, 1, 0]  # train_1 then train_2 in file order, the "-" pair dropped
    assert data.train.has_mask.tolist() == [True, True, True, False]  # no annotator highlighted the last pair
    mask = rows_of(data.train.mask)[0]
    assert mask == [0, 3, 4, 5, 6, 7, 11, 12, 13]  # relevant: every other token but the separator (10)
    for split in ("train", "val", "test"):
        check_invariants(data.split(split))


def test_esnli_majority_over_three_annotators_and_indices_agree_with_marked(esnli):
    data = load_dataset(f"esnli:{esnli}")
    # dev: "man," by annotators 1 and 2, "sleeps." by 1 only, "hat," by 3 only; hypothesis "man" by 1 and 2,
    # "rests." by 2 and 3
    assert rows_of(data.val.rationale) == [[1, 2, 12, 13, 14], [1, 6]]
    assert rows_of(data.test.rationale) == [[6, 7]]
    indices = load_dataset(f"esnli:{esnli}", highlights="indices")
    for split in ("train", "val", "test"):
        assert torch.equal(indices.split(split).rationale, data.split(split).rationale)
        assert torch.equal(indices.split(split).mask, data.split(split).mask)
    ignore = load_dataset(f"esnli:{esnli}", rationale="ignore")
    assert rows_of(ignore.val.mask) == [[1, 2, 12, 13, 14], [1, 6]]
    limited = load_dataset(f"esnli:{esnli}", limit_train=2)
    assert len(limited.train) == 2 and limited.train.y.tolist() == [0, 2] and limited.info["limit_train"] == 2


def test_esnli_words_are_runs_between_spaces_in_both_highlight_columns():
    from rightreasons.data.text.esnli import index_spans, marked_spans

    sentence = "A man,  in a hat."  # two spaces: an empty word 2, as sentence.split(" ") counts
    assert marked_spans(sentence, "A *man,*  in a *hat.*") == [(2, 6), (13, 17)]
    assert marked_spans(sentence, "A *man,* in a *hat.*") == [(2, 6), (13, 17)]  # spacing differs: aligned anyway
    assert marked_spans(sentence, "") == []
    assert marked_spans(sentence, "A *men,* in a hat.") is None
    assert index_spans(sentence, "1,5", "w") == [(2, 6), (13, 17)] and index_spans(sentence, "{}", "w") == []


def test_esnli_marked_sentences_that_do_not_match_are_counted_not_guessed(esnli):
    path = esnli / "esnli_test.csv"
    path.write_text(path.read_text().replace("Kids play *soccer.*", "Kids play *football.*", 1))  # annotator 1
    data = load_dataset(f"esnli:{esnli}")
    assert data.info["unreadable_highlights"] == 1
    # annotator 1's highlight is read as none: "soccer." keeps 1 vote of 3, short of the majority
    assert rows_of(data.test.rationale) == [[]] and data.test.has_mask.tolist() == [False]


def test_esnli_malformed_files_are_one_line_errors(esnli):
    (esnli / "esnli_train_2.csv").rename(esnli / "moved.csv")
    raises_one_line(DataError, lambda: load_dataset(f"esnli:{esnli}"), "esnli_train_2.csv", "no such file")
    (esnli / "moved.csv").rename(esnli / "esnli_train_2.csv")
    dev = esnli / "esnli_dev.csv"
    text = dev.read_text()
    dev.write_text(text.replace("contradiction", "contradicts", 1))
    raises_one_line(DataError, lambda: load_dataset(f"esnli:{esnli}"), "esnli_dev.csv row 3", "'gold_label'",
                    "'contradicts'")
    dev.write_text(text.replace(',"1,6",', ',"1,7",', 1))
    raises_one_line(DataError, lambda: load_dataset(f"esnli:{esnli}", highlights="indices"), "esnli_dev.csv row 2",
                    "'Sentence1_Highlighted_1'", "word index 7")
    dev.write_text(text.replace("Sentence2_marked_3", "Sentence2_mark_3"))
    raises_one_line(DataError, lambda: load_dataset(f"esnli:{esnli}"), "esnli_dev.csv", "'Sentence2_marked_3'")
    raises_one_line(UserError, lambda: load_dataset(f"esnli:{esnli}", limit_train=0), "limit_train")


# ------------------------------------------------------------------------------------------ 20 Newsgroups


@pytest.fixture
def tarball(tmp_path):
    return rep.write_newsgroups_tarball(tmp_path / "20news-bydate.tar.gz")


def test_newsgroups_from_the_tarball_keeps_headers_and_splits_by_date(tarball):
    data = load_dataset(f"newsgroups:{tarball}", min_count=1)
    assert data.info["classes"] == ["alt.atheism", "soc.religion.christian"]
    assert {s: len(data.split(s)) for s in ("train", "val", "test")} == {"train": 6, "val": 2, "test": 2}
    assert data.train.y.tolist().count(0) == 3 and data.val.y.tolist() == [0, 1] and data.test.y.tolist() == [0, 1]
    first = rep.NEWSGROUP_POSTS[("20news-bydate-test", "alt.atheism", 53068)].decode("latin-1")
    assert data.test.words[0] == list(tokenize(first).words)
    assert data.test.words[0][:3] == ["from", ":", "q"]  # headers kept
    posts = [list(tokenize(p.decode("latin-1")).words) for k, p in rep.NEWSGROUP_POSTS.items()
             if k[0] == "20news-bydate-train"]
    assert all(words in posts for words in data.train.words + data.val.words)
    assert any("café" in words for words in data.train.words + data.val.words)  # latin-1
    assert not any("shaders" in words for words in data.train.words + data.val.words)  # comp.graphics skipped
    assert not bool(data.train.has_mask.any()) and data.train.rationale is None
    again = load_dataset(f"newsgroups:{tarball}", seed=5, min_count=1)
    assert torch.equal(again.val.ids, data.val.ids)  # the split follows split_seed, not the seed
    other = load_dataset(f"newsgroups:{tarball}", split_seed=1, min_count=1)
    assert other.val.words != data.val.words


def test_newsgroups_folder_equals_tarball(tarball, tmp_path):
    folder = rep.write_newsgroups_folder(tmp_path / "extracted")
    a, b = load_dataset(f"newsgroups:{tarball}"), load_dataset(f"newsgroups:{folder}")
    for split in ("train", "val", "test"):
        assert a.split(split).words == b.split(split).words
        assert torch.equal(a.split(split).ids, b.split(split).ids)
    holder = tmp_path / "holder"
    holder.mkdir()
    shutil.copy(tarball, holder / "20news-bydate.tar.gz")
    assert load_dataset(f"newsgroups:{holder}").test.words == a.test.words
    (folder / "20news-bydate-train" / "alt.atheism" / "99999").symlink_to(tarball)
    raises_one_line(DataError, lambda: load_dataset(f"newsgroups:{folder}"), "99999", "symbolic link")


@pytest.mark.parametrize("name, kind, link, expected", [
    ("../x", tarfile.REGTYPE, "", "outside the layout"),
    ("/etc/passwd", tarfile.REGTYPE, "", "outside the layout"),
    ("20news-bydate-train/alt.atheism/../../x", tarfile.REGTYPE, "", "outside the layout"),
    ("20news-bydate-train/alt.atheism/99999", tarfile.SYMTYPE, "/etc/passwd", "symbolic link"),
    ("20news-bydate-train/alt.atheism/99998", tarfile.LNKTYPE, "20news-bydate-train/alt.atheism/49960", "hard link"),
    ("20news-bydate-train/alt.atheism/99997", tarfile.FIFOTYPE, "", "special file"),
    ("20news-bydate-train/README", tarfile.REGTYPE, "", "expected a directory"),
])
def test_newsgroups_tar_members_outside_the_layout_are_refused(tmp_path, name, kind, link, expected):
    data = b"x" if kind == tarfile.REGTYPE else None
    path = rep.write_newsgroups_tarball(tmp_path / "20news-bydate.tar.gz", extra=[(name, data or b"", kind, link)])
    raises_one_line(DataError, lambda: load_dataset(f"newsgroups:{path}"), "20news-bydate.tar.gz", name[:20],
                    expected)


def test_newsgroups_broken_or_missing_archives_are_one_line_errors(tmp_path, tarball):
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tarball.read_bytes()[:200])
    raises_one_line(DataError, lambda: load_dataset(f"newsgroups:{cut}"), "cut.tar.gz", "not a readable tar")
    raises_one_line(DataError, lambda: load_dataset(f"newsgroups:{tmp_path / 'none.tar.gz'}"), "none.tar.gz",
                    "no such file")
    raises_one_line(DataError, lambda: load_dataset(f"newsgroups:{tarball}", categories="alt.atheism,sci.space"),
                    "no posts of sci.space")
    raises_one_line(UserError, lambda: load_dataset(f"newsgroups:{tarball}", features="bow"), "features")


def slow_tfidf(train: list[list[str]], docs: list[list[str]], size: int) -> tuple[list[str], np.ndarray]:
    """The TF-IDF of the documentation, term by term in float64."""
    totals = {}
    for doc in train:
        for t in doc:
            totals[t] = totals.get(t, 0) + 1
    ranked = sorted(totals, key=lambda t: (-totals[t], t))[:size]
    vocabulary = sorted(ranked)
    n = len(train)
    out = np.zeros((len(docs), len(vocabulary)))
    for i, doc in enumerate(docs):
        for j, term in enumerate(vocabulary):
            df = sum(term in d for d in train)
            out[i, j] = doc.count(term) * (math.log((1 + n) / (1 + df)) + 1)
        norm = math.sqrt(sum(v * v for v in out[i]))
        if norm > 0:
            out[i] /= norm
    return vocabulary, out


def test_tfidf_matches_a_slow_float64_reference_on_three_documents():
    train = [["apple", "banana", "apple"], ["banana", "cherry"], ["cherry", "date", "date", "date"]]
    other = [["date", "apple", "zebra"], ["zebra"]]
    vocabulary = tfidf_vocabulary(train, 3)
    assert vocabulary == ["apple", "banana", "date"]  # date (3), then the ties apple, banana before cherry
    ref_vocab, ref = slow_tfidf(train, train + other, 3)
    assert ref_vocab == vocabulary
    x = tfidf(train, train + other, vocabulary)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, ref, rtol=1e-6, atol=1e-7)
    idf_apple, idf_banana = math.log(4 / 2) + 1, math.log(4 / 3) + 1  # by hand, document 0
    norm = math.hypot(2 * idf_apple, idf_banana)
    np.testing.assert_allclose(x[0], [2 * idf_apple / norm, idf_banana / norm, 0.0], rtol=1e-6)
    assert float(np.abs(x[4]).sum()) == 0.0  # no known term: a zero row


def test_newsgroups_tfidf_features_are_a_float_table_without_masks(tarball):
    data = load_dataset(f"newsgroups:{tarball}", features="tfidf", max_features=20)
    x = data.train.x
    assert x.dtype == torch.float32 and x.shape == (6, 20) and data.test.x.shape == (2, 20)
    assert data.info["vocabulary"] == sorted(data.info["vocabulary"]) and ":" not in data.info["vocabulary"]
    torch.testing.assert_close(x.norm(dim=1), torch.ones(6))
    assert not bool(data.train.has_mask.any()) and not bool(data.train.mask.any())
    assert float(x.min()) >= 0 and float(x.max()) <= 1
