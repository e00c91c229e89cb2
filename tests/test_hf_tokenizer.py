"""The optional Hugging Face tokenizer (``tokenizer=hf:PATH``): a tokenizer.json trained here, offline."""

import pytest
import tokenizers  # noqa: F401  (an optional integration of the library; the test extra installs it)

from rightreasons.data import load_dataset
from rightreasons.data.text.tokenizer import builtin_tokenize, tokenize, using_tokenizer
from rightreasons.errors import DataError, UserError


def _tokenizer_file(path, texts):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=60, special_tokens=["[UNK]"]))
    tok.save(str(path))
    return path


def _corpus(root):
    for name in ("business", "sport", "tech"):
        (root / name).mkdir(parents=True)
        for i in range(10):
            (root / name / f"{i + 1:03d}.txt").write_text(f"Headline {i}\n\nThe {name}ing news of {name}s today.\n")
    return root


def test_tokens_and_spans_come_from_the_file_inside_the_block_only(tmp_path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2, "!": 3}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    with using_tokenizer(f"hf:{tmp_path}"):  # a directory holding tokenizer.json
        tokens = tokenize("Hello big World!")
    assert tokens.words == ("hello", "[UNK]", "world", "!")
    assert tokens.spans == ((0, 5), (6, 9), (10, 15), (15, 16))
    assert tokenize("Hello big World!") == builtin_tokenize("Hello big World!")  # the built-in one again
    assert builtin_tokenize("Hello big World!").words == ("hello", "big", "world", "!")


def test_decoy_bbc_with_a_hugging_face_tokenizer_keeps_the_decoy_as_one_masked_token(tmp_path):
    source = _corpus(tmp_path / "bbc")
    texts = [p.read_text() for p in source.rglob("*.txt")]
    path = _tokenizer_file(tmp_path / "tok.json", texts)
    splits = load_dataset("decoy-bbc", source=str(source), min_count=1, tokenizer=f"hf:{path}")
    builtin = load_dataset("decoy-bbc", source=str(source), min_count=1)
    assert splits.train.vocab.words != builtin.train.vocab.words
    train = splits.train
    for n in range(len(train)):
        (position,) = train.mask[n].nonzero().flatten().tolist()
        assert train.vocab.words[int(train.ids[n, position])] == f"decoy{int(train.y[n])}"


def test_bad_tokenizer_options_are_one_line_errors(tmp_path):
    source = _corpus(tmp_path / "bbc")
    with pytest.raises(DataError, match="no Hugging Face tokenizer file"):
        load_dataset("decoy-bbc", source=str(source), tokenizer=f"hf:{tmp_path / 'missing.json'}")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not a Hugging Face tokenizer file"):
        load_dataset("decoy-bbc", source=str(source), tokenizer=f"hf:{tmp_path / 'bad.json'}")
    with pytest.raises(UserError, match="'builtin' or 'hf:PATH'"):
        load_dataset("decoy-bbc", source=str(source), tokenizer="spacy")
    with pytest.raises(UserError, match="text datasets only"):
        load_dataset("toy-colors", tokenizer="builtin")
