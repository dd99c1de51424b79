import json

import numpy as np
import pandas as pd
import pytest
import torch

from metatransformer.datasets import ReadError, TableSchema, read, read_table


def _frame():
    return pd.DataFrame({
        "age": [25.0, 40.0, np.nan, 61.0],
        "income": [1000, 2500, 4000, 1500],
        "job": ["clerk", "engineer", None, "clerk"],
        "member": [True, False, True, True],
        "label": [0, 1, 1, 0],
    })


def test_csv_tsv_and_parquet_read_back_what_was_written(tmp_path):
    frame = _frame()
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "t.parquet")
    for name in ("t.csv", "t.tsv", "t.parquet"):
        got = read_table(tmp_path / name)
        pd.testing.assert_frame_equal(got, frame, check_dtype=False)
        assert got["job"].isna().tolist() == [False, False, True, False]
    assert list(read(tmp_path / "t.csv", columns=["label", "age"]).columns) == ["label", "age"]


@pytest.mark.parametrize("name, content, reason", [
    ("header.csv", b"a,b\n", "no rows"),
    ("ragged.csv", b"a,b\n1,2\n3,4,5,6\n", "cannot read"),
    ("inf.csv", b"a,b\n1,inf\n2,3\n", r"infinite values in column\(s\) \['b'\]"),
    ("bad.parquet", b"PAR1\x00\x01\x02 not really parquet PAR1", "cannot read"),
    ("table.xlsx", b"PK\x03\x04", "not a table file"),
])
def test_malformed_tables_raise_read_error_naming_the_file(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ReadError, match=reason) as info:
        read_table(path)
    assert str(path) in str(info.value)


def test_truncated_parquet_and_absent_column(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "t.parquet"
    _frame().to_parquet(path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ReadError, match="t.parquet"):
        read_table(path)
    _frame().to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ReadError, match=r"no column\(s\) \['salary'\]"):
        read_table(tmp_path / "t.csv", columns=["age", "salary"])


def test_schema_fits_statistics_and_vocabularies_of_the_training_split():
    frame = _frame()
    schema = TableSchema.fit(frame, exclude=["label"])
    assert schema.columns == ("age", "income", "job", "member")
    age, income = schema.numeric
    assert age.mean == pytest.approx(np.nanmean(frame["age"])) and age.std == pytest.approx(np.nanstd(frame["age"]))
    assert income.mean == pytest.approx(2250.0) and income.std == pytest.approx(np.std([1000, 2500, 4000, 1500]))
    assert [c.categories for c in schema.categorical] == [("clerk", "engineer"), ("False", "True")]
    constant = TableSchema.fit(pd.DataFrame({"c": [3.0, 3.0]}))
    assert constant.numeric[0].std == 1.0  # a constant column is centred, not divided by 0


def test_encode_standardizes_masks_missing_and_buckets_unseen_categories():
    schema = TableSchema.fit(_frame(), exclude=["label"])
    test = pd.DataFrame({"member": [False, True], "job": ["pilot", "engineer"], "income": [2250.0, np.nan],
                         "age": [np.nan, 40.0], "extra": ["ignored", "ignored"]})
    numeric, categorical, missing = schema.encode(test)
    age, income = schema.numeric
    expected = torch.tensor([[0.0, (2250.0 - income.mean) / income.std], [(40.0 - age.mean) / age.std, 0.0]])
    torch.testing.assert_close(numeric, expected)
    assert categorical.tolist() == [[0, 1], [2, 2]]  # pilot is unseen -> unknown bucket 0; ids start at 1
    assert missing.tolist() == [[True, False, False, False], [False, True, False, False]]


def test_category_spellings_agree_and_absent_columns_are_named():
    schema = TableSchema.fit(pd.DataFrame({"code": [1, 2, 3]}), categorical=["code"])
    _, ids, _ = schema.encode(pd.DataFrame({"code": [3.0, "2", np.int64(1), 7]}, dtype=object))
    assert ids[:, 0].tolist() == [3, 2, 1, 0]
    with pytest.raises(ValueError, match=r"missing column\(s\) \['code'\]"):
        schema.encode(pd.DataFrame({"other": [1]}))
    numeric = TableSchema.fit(pd.DataFrame({"x": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="'x' holds a value that is not a number"):
        numeric.encode(pd.DataFrame({"x": ["1.5", "abc"]}))


def test_schema_round_trips_through_json_and_rejects_bad_fields():
    schema = TableSchema.fit(_frame(), exclude=["label"])
    assert TableSchema.from_dict(json.loads(json.dumps(schema.to_dict()))) == schema
    data = schema.to_dict()
    with pytest.raises(ValueError, match="std > 0"):
        TableSchema.from_dict({**data, "numeric": [{"name": "age", "mean": 0.0, "std": 0.0}]})
    with pytest.raises(ValueError, match="unknown field"):
        TableSchema.from_dict({**data, "target": "label"})
    with pytest.raises(ValueError, match="appears twice"):
        TableSchema.from_dict({"numeric": [{"name": "a", "mean": 0, "std": 1}],
                               "categorical": [{"name": "a", "categories": []}]})
