"""Hostile corpora (issue 17): every way a corpus file can be wrong is a CorpusError (a ValueError; the
not-found kind is also a FileNotFoundError) whose message names the file and says what to do. The
training CLI catches CorpusError and exits 2."""
from __future__ import annotations

import pytest
import torch

from helpers import corpus_path
from tiny_transformer.data import (CorpusError, CorpusNotFoundError, RandomWindowSampler, fixed_batches, load_text,
                                   prepare_corpus)


def _make(tmp_path, data):
    path = tmp_path / "corpus.txt"
    if data == "<dir>":
        path.mkdir()
    elif data is not None:
        path.write_bytes(data)
    return path


# (file content, block_size, exception type, fragments of the message besides the file name)
CASES = {
    "missing": (None, None, CorpusNotFoundError, ["does not exist"]),
    "a directory": ("<dir>", None, CorpusNotFoundError, ["is a folder"]),
    "empty": (b"", None, CorpusError, ["is empty", "data.path"]),
    "only whitespace": (b" \n\n\t\n", None, CorpusError, ["is empty"]),
    "binary": (bytes(range(256)) * 8, None, CorpusError, ["binary"]),
    "non-UTF-8 (Latin-1)": ("Roméo et Juliette\n".encode("latin1") * 50, None, CorpusError, ["not UTF-8", "0xe9", "iconv"]),
    "UTF-16 with a BOM": ("ROMEO:\n".encode("utf-16") * 50, None, CorpusError, ["binary"]),
    "one character": (b"a", None, CorpusError, ["too few to split"]),
    "shorter than the context": (b"To be, or not to be.\n" * 20, 128, CorpusError,
                                 ["too short for a context of 128", "validation split", "model.max_seq_len"]),
    "validation split shorter than the context": (b"To be, or not to be.\n" * 100, 256, CorpusError,
                                                  ["validation split holds", "at most"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_corpus_is_a_corpus_error_naming_the_file(tmp_path, case):
    data, block, kind, fragments = CASES[case]
    path = _make(tmp_path, data)
    with pytest.raises(kind) as info:
        prepare_corpus(path, block_size=block)
    message = str(info.value)
    assert isinstance(info.value, CorpusError) and isinstance(info.value, ValueError)
    assert str(path) in message, message
    assert "vocab_size must be a positive integer" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_not_found_is_also_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_text(tmp_path / "nope.txt")


def test_tt_data_pointing_nowhere_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("TT_DATA", str(tmp_path / "gone.txt"))
    with pytest.raises(CorpusNotFoundError, match="TT_DATA"):
        load_text()


def test_a_corpus_that_fits_passes_and_the_real_one_loads():
    corpus = prepare_corpus(corpus_path(), block_size=256)
    assert len(corpus.val) > 256 and corpus.source == corpus_path()


def test_samplers_refuse_short_data_with_a_corpus_error_not_a_tensor_error():
    short = torch.arange(50)
    with pytest.raises(CorpusError, match="block_size=64 needs 65"):
        fixed_batches(short, 64, 8, 2)
    with pytest.raises(CorpusError, match="block_size=64 needs 65"):
        RandomWindowSampler(short, 64, 8)


def test_unknown_tokenizer_names_the_registry_and_suggests(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'bpe'"):
        prepare_corpus(text="abc" * 100, tokenizer="bep")
