import time

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

import metatransformer as mt
from metatransformer.data2seq import Data2Seq, TabularTokenizer
from metatransformer.datasets import TableBatch, TableSchema
from metatransformer.registry import get_modality


def _train():
    return pd.DataFrame({"age": [25.0, 40.0, np.nan, 61.0], "job": ["clerk", "engineer", None, "clerk"],
                         "member": [True, False, True, True], "label": [0, 1, 1, 0]})


def test_one_token_per_column_values_and_missing_mask():
    schema = TableSchema.fit(_train(), exclude=["label"])  # age numeric; job, member categorical
    tokenizer = Data2Seq("tabular", 16, schema=schema.to_dict())
    rows = pd.DataFrame({"age": [61.0, np.nan], "job": ["pilot", "clerk"], "member": [False, None]})
    seq = tokenizer(rows)
    assert seq.tokens.shape == (2, 4, 16) and seq.prefix.tolist() == [True, False, False, False]
    assert seq.mask.tolist() == [[True, True, True, True], [True, False, True, False]]
    age = schema.numeric[0]
    w, c, table = tokenizer.numeric_weight, tokenizer.column_embed, tokenizer.category_embed.weight
    # job has ids 0 (unknown), 1 clerk, 2 engineer; member's rows start after them: 3 unknown, 4 False, 5 True
    torch.testing.assert_close(seq.tokens[0, 1], (61.0 - age.mean) / age.std * w[0] + c[0])
    torch.testing.assert_close(seq.tokens[0, 2], table[0] + c[1])  # unseen "pilot" -> unknown bucket
    torch.testing.assert_close(seq.tokens[1, 2], table[1] + c[1])
    torch.testing.assert_close(seq.tokens[0, 3], table[4] + c[2])
    torch.testing.assert_close(seq.tokens[:, 0], tokenizer.cls_token.token[0].expand(2, -1))
    torch.testing.assert_close(tokenizer(schema.encode(rows)).tokens, seq.tokens)  # DataFrame == TableBatch input


def test_bad_inputs_name_the_problem():
    schema = TableSchema.fit(_train(), exclude=["label"])
    with pytest.raises(ValueError, match=r"TableSchema.fit\(train_frame"):
        Data2Seq("tabular", 16)
    tokenizer = TabularTokenizer(dim=8, schema=schema.to_dict())
    with pytest.raises(ValueError, match=r"missing column\(s\) \['member'\]"):
        tokenizer(pd.DataFrame({"age": [1.0], "job": ["clerk"]}))
    batch = schema.encode(_train())
    with pytest.raises(TypeError, match="TableBatch or a DataFrame"):
        tokenizer([batch.numeric])
    with pytest.raises(ValueError, match="outside its column's vocabulary"):
        tokenizer(batch._replace(categorical=batch.categorical + 5))
    with pytest.raises(ValueError, match="1 numeric and 2 categorical"):
        tokenizer(batch._replace(numeric=batch.numeric[:, :0]))


def test_fitted_schema_round_trips_through_save_and_load(tmp_path):
    schema = TableSchema.fit(_train(), exclude=["label"])
    model = mt.create_model("nano", modalities={"tabular": {"schema": schema.to_dict()}})
    model.save_pretrained(tmp_path)
    loaded = mt.MetaTransformer.from_pretrained(tmp_path)
    assert loaded.tokenizer("tabular").schema == schema
    rows = pd.DataFrame({"age": [33.0, np.nan], "job": ["astronaut", "engineer"], "member": [True, False]})
    with torch.no_grad():
        torch.testing.assert_close(loaded.tokenizer("tabular")(rows).tokens, model.tokenizer("tabular")(rows).tokens)


def test_reader_transform_collate_tokenizer_encoder_path(tmp_path):
    schema = TableSchema.fit(_train(), exclude=["label"])
    _train().to_csv(tmp_path / "a.csv", index=False)
    _train().iloc[:2].drop(columns="label").to_csv(tmp_path / "b.csv", index=False)
    spec = get_modality("tabular")
    tokenizer = mt.create_tokenizer("tabular", 64, schema=schema.to_dict())
    items = [spec.transform(tokenizer)(mt.read(tmp_path / name)) for name in ("a.csv", "b.csv")]
    batch = spec.collate(items)  # a file is a batch of rows: 4 + 2 rows
    assert isinstance(batch, TableBatch) and batch.num_rows == 6
    seq = tokenizer(batch)
    assert seq.mask[:, 1:].tolist() == (~schema.encode(pd.concat([_train(), _train().iloc[:2]])).missing).tolist()
    out = mt.create_encoder("nano")(seq.tokens, seq.mask)
    assert out.shape == (6, 4, 64) and torch.isfinite(out).all()


def test_head_on_a_frozen_encoder_beats_the_majority_class_on_wine():
    sklearn = pytest.importorskip("sklearn.datasets")
    from sklearn.model_selection import train_test_split

    frame = sklearn.load_wine(as_frame=True).frame  # 178 rows, 13 numeric columns, 3 cultivars
    train, test = train_test_split(frame, test_size=0.3, random_state=0, stratify=frame["target"])
    schema = TableSchema.fit(train, exclude=["target"])  # statistics of the training split only
    tokenizer = mt.create_tokenizer("tabular", 64, schema=schema.to_dict())
    encoder = mt.create_encoder("nano").freeze().eval()
    head = nn.Sequential(nn.LayerNorm(64), nn.Linear(64, 3))
    x_train, y_train = schema.encode(train), torch.tensor(train["target"].to_numpy())
    x_test, y_test = schema.encode(test), torch.tensor(test["target"].to_numpy())

    def logits(batch):
        seq = tokenizer(batch)
        return head(encoder(seq.tokens, seq.mask)[:, 0])  # the cls token

    optimizer = torch.optim.AdamW([*tokenizer.parameters(), *head.parameters()], lr=3e-3, weight_decay=0.01)
    start = time.perf_counter()
    for _ in range(5):
        for index in torch.randperm(len(y_train)).split(32):
            loss = nn.functional.cross_entropy(logits(x_train.select(index)), y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        accuracy = (logits(x_test).argmax(1) == y_test).float().mean().item()
    majority = (y_test == y_train.mode().values).float().mean().item()
    print(f"wine: test accuracy {accuracy:.3f}, majority class {majority:.3f}, "
          f"{time.perf_counter() - start:.1f} s")
    assert not any(p.requires_grad for p in encoder.parameters())
    assert accuracy > majority + 0.3
