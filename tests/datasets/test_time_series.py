import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from metatransformer.datasets import ReadError, ett_splits, ratio_splits, read, read_time_series, read_ts

pandas = pytest.importorskip("pandas")

_SKTIME = importlib.util.find_spec("sktime")  # the test data source only; never imported by the reader
SKTIME_DATA = Path(_SKTIME.origin).parent / "datasets" / "data" if _SKTIME else None
TS_FILES = sorted(SKTIME_DATA.glob("*/*.ts")) if SKTIME_DATA else []
# Train/test case counts published with the UCR/UEA archive (timeseriesclassification.com).
CASES = {"ACSF1": (100, 100), "ArrowHead": (36, 175), "BasicMotions": (40, 40), "Covid3Month": (140, 61),
         "GunPoint": (50, 150), "ItalyPowerDemand": (67, 1029), "JapaneseVowels": (270, 370), "OSULeaf": (200, 242),
         "PLAID": (537, 537), "Tecator": (172, 43), "UnitTest": (20, 22)}
ETT_COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


def _ett_frame(steps: int, seed: int = 0) -> "pandas.DataFrame":
    rng = np.random.default_rng(seed)
    frame = pandas.DataFrame(rng.standard_normal((steps, 7)).astype(np.float32), columns=ETT_COLUMNS)
    frame.insert(0, "date", pandas.date_range("2016-07-01", periods=steps, freq="h").astype(str))
    return frame


def test_csv_in_the_etth1_layout_drops_the_date_column(tmp_path):
    frame = _ett_frame(50)
    frame.to_csv(tmp_path / "ETTh1.csv", index=False)
    series = read(tmp_path / "ETTh1.csv", modality="ts")  # .csv alone infers tabular (registered first)
    assert series.dtype == torch.float32 and series.shape == (50, 7)
    np.testing.assert_allclose(series.numpy(), frame[ETT_COLUMNS].to_numpy(), rtol=1e-6)
    subset = read_time_series(tmp_path / "ETTh1.csv", columns=["OT", "HUFL"])
    np.testing.assert_allclose(subset.numpy(), frame[["OT", "HUFL"]].to_numpy(), rtol=1e-6)


def test_parquet_and_numpy(tmp_path):
    frame = _ett_frame(20).rename(columns={"date": "when"})
    frame.to_parquet(tmp_path / "s.parquet")
    series = read_time_series(tmp_path / "s.parquet", time_column="when")
    np.testing.assert_array_equal(series.numpy(), frame[ETT_COLUMNS].to_numpy())
    array = np.arange(30, dtype=np.float64).reshape(10, 3)
    np.save(tmp_path / "a.npy", array)
    np.savez(tmp_path / "b.npz", series=array[:, 0])
    assert torch.equal(read_time_series(tmp_path / "a.npy"), torch.from_numpy(array).float())
    assert read_time_series(tmp_path / "b.npz").shape == (10, 1)


def test_missing_values_raise_or_interpolate(tmp_path):
    frame = _ett_frame(5)
    frame.loc[2, "OT"] = np.nan
    frame.to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(ReadError, match=r"gap\.csv.*row 2, channel 6"):
        read_time_series(tmp_path / "gap.csv")
    filled = read_time_series(tmp_path / "gap.csv", missing="interpolate")
    assert filled[2, 6] == pytest.approx((frame.loc[1, "OT"] + frame.loc[3, "OT"]) / 2)


def test_bad_tables_raise_read_error_naming_the_file(tmp_path):
    _ett_frame(5).to_csv(tmp_path / "ett.csv", index=False)
    with pytest.raises(ReadError, match=r"ett\.csv.*missing column.*'load'"):
        read_time_series(tmp_path / "ett.csv", columns=["OT", "load"])
    text = pandas.DataFrame({"when": ["a", "b"], "city": ["x", "y"], "v": [1.0, 2.0]})
    text.to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(ReadError, match=r"text\.csv.*not numeric"):
        read_time_series(tmp_path / "text.csv")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ReadError, match=r"bad\.npy"):
        read_time_series(tmp_path / "bad.npy")
    np.save(tmp_path / "inf.npy", np.array([[1.0], [np.inf]]))
    with pytest.raises(ReadError, match=r"inf\.npy.*infinite"):
        read_time_series(tmp_path / "inf.npy")


@pytest.mark.skipif(not TS_FILES, reason="sktime (the source of the .ts test files) is not installed")
def test_every_ts_file_sktime_ships_parses_and_matches_its_header():
    assert len(TS_FILES) == 22
    for path in TS_FILES:
        data = read_ts(path)
        meta = data.metadata
        header = {line.split()[0][1:].lower(): line.split()[1:] for line in path.read_text().splitlines()
                  if line.startswith("@") and line.lower() != "@data"}
        name, split = path.stem.rsplit("_", 1)
        assert len(data.series) == CASES[name][split == "TEST"], path
        channels = {s.shape[1] for s in data.series}
        expected_channels = 1 if header["univariate"] == ["true"] else int(header["dimensions"][0])
        assert channels == {expected_channels}, path
        lengths = data.lengths
        if header.get("equallength", ["true"]) == ["true"]:
            assert lengths.unique().numel() == 1, path
        if "serieslength" in header:
            assert (lengths == int(header["serieslength"][0])).all(), path
        padded = data.padded()
        assert padded.values.shape == (len(data.series), int(lengths.max()), expected_channels)
        assert torch.equal(padded.mask.sum(1), lengths), path
        if header.get("classlabel", ["false"])[0] == "true":
            assert meta["class_labels"] == header["classlabel"][1:]
            assert set(data.labels) <= set(header["classlabel"][1:]), path
            assert data.class_indices().max() < len(meta["class_labels"])
        else:
            assert header["targetlabel"] == ["true"] and data.labels.dtype == torch.float64, path
        for series in data.series:
            assert series.dtype == torch.float32 and torch.isfinite(series).all()


@pytest.mark.skipif(not TS_FILES, reason="sktime is not installed")
def test_ts_values_and_labels_match_the_text():
    path = SKTIME_DATA / "JapaneseVowels" / "JapaneseVowels_TRAIN.ts"  # 12 channels, unequal lengths
    data = read_ts(path)
    lines = [line for line in path.read_text().splitlines() if line and line[0] not in "@#%"]
    for case in (0, 137, 269):
        *dims, label = lines[case].split(":")
        expected = np.array([[float(v) for v in dim.split(",")] for dim in dims], dtype=np.float32).T
        np.testing.assert_array_equal(data.series[case].numpy(), expected)
        assert data.labels[case] == label
    assert sorted(set(data.lengths.tolist()))[0] < sorted(set(data.lengths.tolist()))[-1]
    covid = read_ts(SKTIME_DATA / "Covid3Month" / "Covid3Month_TEST.ts")
    first = next(line for line in (SKTIME_DATA / "Covid3Month" / "Covid3Month_TEST.ts").read_text().splitlines()
                 if line and line[0] not in "@#%")
    assert covid.labels[0].item() == float(first.rsplit(":", 1)[1])


HEADER = "@problemName Toy\n@timeStamps false\n@missing {missing}\n@univariate false\n@dimensions 2\n" \
         "@equalLength {equal}\n@classLabel true a b\n@data\n"


def _write_ts(tmp_path, body, missing="false", equal="false", name="toy.ts"):
    path = tmp_path / name
    path.write_text(HEADER.format(missing=missing, equal=equal) + body)
    return path


def test_missing_values_and_unequal_lengths_give_masks(tmp_path):
    path = _write_ts(tmp_path, "1,2,3:4,5,6:a\n7,?:8,9:b\n", missing="true")
    data = read_ts(path)
    assert data.labels == ["a", "b"] and data.class_indices().tolist() == [0, 1]
    assert torch.equal(data.series[0], torch.tensor([[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]))
    assert data.series[1][1, 0].isnan() and data.series[1][1, 1] == 9
    padded = data.padded()
    assert padded.values.shape == (2, 3, 2) and torch.isfinite(padded.values).all()
    assert padded.mask.tolist() == [[True, True, True], [True, False, False]]


@pytest.mark.parametrize("body, missing, equal, problem", [
    ("1,2:3:a\n", "false", "false", "ragged dimensions"),
    ("1,2:a\n", "false", "false", "1 dimension"),
    ("1,?:3,4:a\n", "false", "false", "@missing false"),
    ("1,nan:3,4:a\n", "false", "false", "NaN or infinite value .a missing value is written '\\?'."),
    ("1,inf:3,4:a\n", "true", "false", "NaN or infinite value"),
    ("1,2:3,4:c\n", "false", "false", "'c' is not among"),
    ("1,x:3,4:a\n", "false", "false", "could not convert"),
    ("1,2:3,4:a\n1,2,3:3,4,5:b\n", "false", "true", "equal lengths"),
    ("1,2:3,4\n", "false", "false", "1 dimension"),
    ("", "false", "false", "no cases"),
])
def test_broken_ts_files_raise_read_error_naming_the_file(tmp_path, body, missing, equal, problem):
    path = _write_ts(tmp_path, body, missing, equal)
    with pytest.raises(ReadError, match=rf"toy\.ts.*{problem}"):
        read_ts(path)


@pytest.mark.parametrize("text, problem", [
    ("@problemName X\n@classLabel true a\n1,2:a\n", "data before the @data"),
    ("@problemName X\n@classLabel true a\n", "no @data"),
    ("@problemName X\n@data\n1,2:a\n", "neither @classLabel nor @targetLabel"),
    ("@dimensions two\n@classLabel true a\n@data\n1:a\n", "positive integer"),
    ("@univariate maybe\n@classLabel true a\n@data\n1:a\n", "true or false"),
    ("@timeStamps true\n@classLabel true a\n@data\n(0,1):a\n", "not supported"),
    ("@targetLabel true\n@data\n1,2:high\n", "not a number"),
])
def test_broken_ts_headers(tmp_path, text, problem):
    path = tmp_path / "head.ts"
    path.write_text(text)
    with pytest.raises(ReadError, match=rf"head\.ts.*{problem}"):
        read_ts(path)


def test_ett_split_is_12_4_4_months_with_train_statistics():
    steps, lookback, horizon = 20 * 720 + 100, 96, 24
    series = torch.tensor(_ett_frame(steps)[ETT_COLUMNS].to_numpy())
    splits = ett_splits(series, lookback=lookback, horizon=horizon)
    assert len(splits.train) == 8640 - lookback - horizon + 1
    assert len(splits.val) == len(splits.test) == 2880 - horizon + 1
    train_part = series[:8640].numpy()
    np.testing.assert_allclose(splits.mean.numpy(), train_part.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(splits.std.numpy(), train_part.std(0), rtol=1e-5)  # StandardScaler: ddof 0
    x, y = splits.val[0]
    standard = (series - splits.mean) / splits.std
    assert torch.equal(x, standard[8640 - lookback:8640]) and torch.equal(y, standard[8640:8640 + horizon])
    x, y = splits.test[-1]
    assert torch.equal(y, standard[14400 - horizon:14400]) and x.shape == (lookback, 7)
    with pytest.raises(ValueError, match="14400 steps"):
        ett_splits(series[:1000])


def _dataset_custom(data: np.ndarray, seq_len: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Autoformer's ``Dataset_Custom.__read_data__`` (features='M', scale=True) in numpy: the scaled
    ``data_x`` of train, val, test and the scaler's mean and (population) std."""
    num_train = int(len(data) * 0.7)
    num_test = int(len(data) * 0.2)
    num_vali = len(data) - num_train - num_test
    border1s = [0, num_train - seq_len, len(data) - num_test - seq_len]
    border2s = [num_train, num_train + num_vali, len(data)]
    train_data = data[border1s[0]:border2s[0]]
    mean, scale = train_data.mean(0), train_data.std(0)
    scaled = (data - mean) / scale
    return [scaled[b1:b2] for b1, b2 in zip(border1s, border2s)], mean, scale


@pytest.mark.parametrize("steps", [701, 997, 1000, 5273])
def test_ratio_split_matches_dataset_custom(steps):
    """Borders, scaler and windows of Autoformer's Dataset_Custom (Traffic/Weather/Exchange), odd lengths too:
    its __len__ is len(data_x) - seq_len - pred_len + 1, item i is data_x[i:i+seq_len], data_x[i+seq_len:...]."""
    lookback, horizon = 96, 24
    rng = np.random.default_rng(steps)
    data = (rng.standard_normal((steps, 3)) * [1, 10, 0.1] + [0, 5, -2]).astype(np.float32)
    splits = ratio_splits(torch.from_numpy(data), lookback=lookback, horizon=horizon)
    parts, mean, scale = _dataset_custom(data.astype(np.float64), lookback)
    np.testing.assert_allclose(splits.mean.numpy(), mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(splits.std.numpy(), scale, rtol=1e-5)
    for windows, part in zip((splits.train, splits.val, splits.test), parts):
        assert windows.series.shape == part.shape and len(windows) == len(part) - lookback - horizon + 1
        np.testing.assert_allclose(windows.series.numpy(), part, rtol=1e-4, atol=1e-5)
        x, y = windows[len(windows) - 1]
        np.testing.assert_allclose(y.numpy(), part[-horizon:], rtol=1e-4, atol=1e-5)
    x, y = splits.test[0]  # the first test target starts at the test border
    standard = (torch.from_numpy(data) - splits.mean) / splits.std
    border = steps - int(steps * 0.2)
    assert torch.equal(y, standard[border:border + horizon]) and torch.equal(x, standard[border - lookback:border])


def test_ratio_split_other_ratios_and_raw_values():
    series = torch.arange(200.0).unsqueeze(1)
    splits = ratio_splits(series, lookback=10, horizon=5, ratios=[0.6, 0.25, 0.15], standardize=False)
    assert [len(w.series) for w in (splits.train, splits.val, splits.test)] == [120, 10 + 50, 10 + 30]
    assert splits.val[0][1][0].item() == 120.0 and splits.test[0][1][0].item() == 170.0
    assert splits.mean.item() == pytest.approx(59.5)


@pytest.mark.parametrize("ratios", [(0.7, 0.3), (0.7, 0.1, 0.1, 0.1), (0.7, 0.3, 0.0), (0.5, 0.3, 0.3),
                                    (-0.1, 0.9, 0.2), (0.7, float("nan"), 0.3), ("a", 0.5, 0.5), 0.7])
def test_bad_split_ratios_raise(ratios):
    with pytest.raises(ValueError, match="three positive fractions"):
        ratio_splits(torch.zeros(1000, 2), ratios=ratios)


def test_a_split_part_too_short_for_a_window_raises():
    with pytest.raises(ValueError, match="the val part has 10 steps, too few for one 8 → 12 window"):
        ratio_splits(torch.zeros(100, 2), lookback=8, horizon=12)
    with pytest.raises(ValueError, match="the train part has 70 steps"):
        ratio_splits(torch.zeros(100, 2), lookback=96, horizon=4)


def test_a_channel_constant_in_training_keeps_scale_one_as_sklearn_does():
    from sklearn.preprocessing import StandardScaler

    data = np.random.default_rng(1).standard_normal((300, 2)).astype(np.float32)
    data[:210, 1] = 4.0  # constant over the training part (int(0.7 · 300) = 210 steps), varies later
    splits = ratio_splits(torch.from_numpy(data), lookback=8, horizon=4)
    scaler = StandardScaler().fit(data[:210])
    np.testing.assert_allclose(splits.std.numpy(), scaler.scale_, rtol=1e-6)
    np.testing.assert_allclose(splits.test.series.numpy(), scaler.transform(data[300 - 60 - 8:]), rtol=1e-5, atol=1e-5)
