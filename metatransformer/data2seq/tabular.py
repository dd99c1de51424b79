"""Tables: one token per column (FT-Transformer's feature tokenizer) + column embedding + cls token."""
from __future__ import annotations

import math
from itertools import accumulate
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn as nn

from .._validation import check_range
from ..datasets.tabular import TABLE_SUFFIXES, TableBatch, TableSchema, read_table
from ..registry import register_modality
from .base import ClsToken, TokenSequence, Tokenizer

if TYPE_CHECKING:
    import pandas as pd

MAX_COLUMNS = 4096
MAX_CATEGORIES = 2**20  # embedding rows over all categorical columns; checked before they are allocated


class TabularTokenizer(Tokenizer):
    """Feature tokenizer (Gorishniy et al. 2021, FT-Transformer): one token per column, then a cls token.

    A numeric column's token is ``x · w_j + c_j`` (a per-column Linear(1 → D) on the standardized value);
    a categorical column's is ``E_j[id] + c_j`` (a per-column embedding whose row 0 is the unknown
    bucket); ``c_j`` is the column's learned embedding, which also tells the encoder which column a
    token is. Missing cells are masked out of attention. The schema fitted on the training split is
    an option (a JSON dict), so a saved model carries it and applies it unchanged at inference.

    Args:
        dim: token width D.
        schema: ``TableSchema.fit(train_frame, exclude=[target]).to_dict()``; required (None raises,
            saying how to fit one).
        cls_token: prepend a learned cls token.

    Inputs:
        batch: a :class:`~metatransformer.datasets.tabular.TableBatch` (numeric (b, n_num) float,
            categorical (b, n_cat) int64, missing (b, n_num + n_cat) bool), as ``schema.encode(frame)`` and
            the registered collate return; a pandas DataFrame is encoded with this tokenizer's schema first.

    Returns:
        tokens (b, [1 +] n_num + n_cat, D) in the schema's column order (numeric, then categorical) and
        mask (b, n), False for missing cells.
    """

    def __init__(self, *, dim: int, schema: dict | None = None, cls_token: bool = True) -> None:
        super().__init__(dim=dim)
        if schema is None:
            raise ValueError("TabularTokenizer needs the schema fitted on the training split: "
                             "schema=TableSchema.fit(train_frame, exclude=[target]).to_dict() "
                             "(from metatransformer.datasets.tabular)")
        self.schema = TableSchema.from_dict(schema)
        num_numeric, num_categorical = len(self.schema.numeric), len(self.schema.categorical)
        check_range("TabularTokenizer number of columns", num_numeric + num_categorical, high=MAX_COLUMNS)
        sizes = [1 + len(column.categories) for column in self.schema.categorical]  # + the unknown bucket
        check_range("TabularTokenizer number of categories", sum(sizes), high=MAX_CATEGORIES)
        self.register_buffer("category_sizes", torch.tensor(sizes, dtype=torch.long), persistent=False)
        self.register_buffer("category_offsets", torch.tensor([0, *accumulate(sizes)][:-1] if sizes else [],
                                                              dtype=torch.long), persistent=False)
        self.numeric_weight = nn.Parameter(torch.empty(num_numeric, dim))
        self.category_embed = nn.Embedding(sum(sizes), dim) if sizes else None
        self.column_embed = nn.Parameter(torch.empty(num_numeric + num_categorical, dim))
        self.cls_token = ClsToken(dim) if cls_token else None
        self.num_prefix_tokens = int(cls_token)
        bound = 1 / math.sqrt(dim)  # FT-Transformer's uniform token initialization
        for weight in (self.numeric_weight, self.column_embed, *([self.category_embed.weight] if sizes else [])):
            nn.init.uniform_(weight, -bound, bound)

    def forward(self, batch: TableBatch | tuple[torch.Tensor, ...] | "pd.DataFrame") -> TokenSequence:
        if isinstance(batch, tuple):
            batch = TableBatch(*batch)
        elif hasattr(batch, "columns"):  # a pandas DataFrame
            batch = self.schema.encode(batch)
        else:
            raise TypeError(f"tabular tokenizer expects a TableBatch or a DataFrame, got {type(batch).__name__}")
        device = self.column_embed.device
        numeric, categorical, missing = (part.to(device) for part in batch)
        rows, num_numeric, num_categorical = missing.shape[0], len(self.schema.numeric), len(self.schema.categorical)
        if (numeric.shape != (rows, num_numeric) or categorical.shape != (rows, num_categorical)
                or missing.shape != (rows, num_numeric + num_categorical)):
            raise ValueError(f"tabular tokenizer: the schema has {num_numeric} numeric and {num_categorical} "
                             f"categorical columns; got numeric {tuple(numeric.shape)}, categorical {tuple(categorical.shape)}, "
                             f"missing {tuple(missing.shape)}")
        if categorical.numel() and ((categorical < 0) | (categorical >= self.category_sizes)).any():
            raise ValueError("tabular tokenizer: a category id is outside its column's vocabulary")
        x_numeric = numeric.to(self.numeric_weight.dtype).unsqueeze(-1) * self.numeric_weight  # b n_num d
        parts = [x_numeric]
        if self.category_embed is not None:
            parts.append(self.category_embed(categorical + self.category_offsets))  # b n_cat d
        x = torch.cat(parts, dim=1) + self.column_embed  # b n d
        mask = ~missing.bool()
        if self.cls_token is not None:
            x, mask = self.cls_token(x, mask)
        return self.sequence(x, mask)


def table_transform(tokenizer: TabularTokenizer) -> Callable[["pd.DataFrame"], TableBatch]:
    """A table read from a file → its rows encoded with ``tokenizer``'s schema (a file is a batch of rows)."""
    return tokenizer.schema.encode


def table_rows(batch: TableBatch) -> list[TableBatch]:
    """One item per row: a table file holds many samples."""
    return [batch.select(slice(i, i + 1)) for i in range(batch.num_rows)]


register_modality("tabular", tokenizer=TabularTokenizer, reader=read_table, suffixes=TABLE_SUFFIXES,
                  collate=TableBatch.concat, transform=table_transform, split=table_rows, aliases=("table", "tab"))
