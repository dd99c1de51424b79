import numpy as np
import pytest
import torch

from metatransformer.datasets import ReadError, imu_windows, read, read_imu

pandas = pytest.importorskip("pandas")

COLUMNS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]


def _frame(steps=50, seed=0):
    rng = np.random.default_rng(seed)
    frame = pandas.DataFrame(rng.standard_normal((steps, 6)), columns=COLUMNS)
    frame.insert(0, "t", np.arange(steps) / 50.0)
    return frame


def test_units_are_converted_to_si(tmp_path):
    frame = _frame()
    frame.to_csv(tmp_path / "watch.csv", index=False)
    si = read_imu(tmp_path / "watch.csv")
    assert si.dtype == torch.float32 and si.shape == (50, 6)
    np.testing.assert_allclose(si.numpy(), frame[COLUMNS].to_numpy(), rtol=1e-6)
    converted = read_imu(tmp_path / "watch.csv", accel_units="g", gyro_units="deg/s")
    np.testing.assert_allclose(converted[:, :3].numpy(), frame[COLUMNS[:3]].to_numpy() * 9.80665, rtol=1e-6)
    np.testing.assert_allclose(converted[:, 3:].numpy(), np.deg2rad(frame[COLUMNS[3:]].to_numpy()), rtol=1e-6)


def test_column_mapping_and_numpy(tmp_path):
    frame = _frame().rename(columns=dict(zip(COLUMNS, ["ax", "ay", "az", "wx", "wy", "wz"])))
    frame.to_parquet(tmp_path / "phone.parquet")
    mapped = read_imu(tmp_path / "phone.parquet", columns=("wx", "wy", "wz", "ax", "ay", "az"))
    np.testing.assert_allclose(mapped.numpy(), frame[["wx", "wy", "wz", "ax", "ay", "az"]].to_numpy(), rtol=1e-6)
    np.save(tmp_path / "stream.npy", frame[["ax", "ay", "az", "wx", "wy", "wz"]].to_numpy())
    assert torch.equal(read(tmp_path / "stream.npy", modality="imu"), mapped[:, [3, 4, 5, 0, 1, 2]])


def test_irregular_timestamps_resample_onto_a_uniform_grid(tmp_path):
    rng = np.random.default_rng(1)
    times = np.cumsum(rng.uniform(0.003, 0.007, 400))  # ~200 Hz with jitter
    frame = pandas.DataFrame({c: (i + 1) * times + i for i, c in enumerate(COLUMNS)})  # linear in time
    frame["time"] = times
    frame.to_csv(tmp_path / "jitter.csv", index=False)
    stream = read_imu(tmp_path / "jitter.csv", time_column="time", sample_rate=100.0)
    grid = times[0] + np.arange(int((times[-1] - times[0]) * 100) + 1) / 100
    expected = np.stack([(i + 1) * grid + i for i in range(6)], axis=1)
    assert stream.shape == expected.shape
    np.testing.assert_allclose(stream.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_bad_imu_files_raise_read_error_naming_the_file(tmp_path):
    frame = _frame()
    frame.drop(columns=["gyro_z"]).to_csv(tmp_path / "five.csv", index=False)
    with pytest.raises(ReadError, match=r"five\.csv.*missing column.*gyro_z"):
        read_imu(tmp_path / "five.csv")
    frame.loc[3, "acc_y"] = np.nan
    frame.to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(ReadError, match=r"gap\.csv.*row 3, channel 1"):
        read_imu(tmp_path / "gap.csv")
    _frame().to_csv(tmp_path / "ok.csv", index=False)
    with pytest.raises(ReadError, match=r"ok\.csv.*needs timestamps"):
        read_imu(tmp_path / "ok.csv", sample_rate=50.0)
    backwards = _frame()
    backwards.loc[10, "t"] = 0.0
    backwards.to_csv(tmp_path / "back.csv", index=False)
    with pytest.raises(ReadError, match=r"back\.csv.*increasing"):
        read_imu(tmp_path / "back.csv", time_column="t", sample_rate=50.0)
    (tmp_path / "junk.csv").write_bytes(b"\x00\xff\xfe" * 100)
    with pytest.raises(ReadError, match=r"junk\.csv"):
        read_imu(tmp_path / "junk.csv")


def test_windows_and_majority_labels():
    stream = torch.arange(100.0).view(50, 2)
    labels = torch.tensor([0] * 22 + [2] * 28)
    windows, window_labels = imu_windows(stream, length=10, hop=5, labels=labels)
    assert windows.shape == (9, 10, 2)
    for i in range(9):
        assert torch.equal(windows[i], stream[5 * i:5 * i + 10])
    assert window_labels.tolist() == [0, 0, 0, 0, 2, 2, 2, 2, 2]  # window 3 = steps 15..24: seven 0s
    _, tie = imu_windows(stream[:10], length=10, hop=10, labels=torch.tensor([3] * 5 + [1] * 5))
    assert tie.tolist() == [1]
    with pytest.raises(ValueError, match="at least 60 steps"):
        imu_windows(stream, length=60, hop=1)
