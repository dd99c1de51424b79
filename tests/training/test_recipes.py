"""Every recipe in configs/ runs (nano encoder, 16×16 inputs, one epoch) on a few files generated in its
dataset's published layout and converted to a manifest with tools/convert_datasets.py."""
from __future__ import annotations

import csv
import importlib.util
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import pytest
from PIL import Image

from metatransformer.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "configs").glob("*.yaml"))
_spec = importlib.util.spec_from_file_location("convert_datasets", ROOT / "tools" / "convert_datasets.py")
convert = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(convert)
RNG = np.random.default_rng(0)


def _image(path: Path, level: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (20, 20, 3) if mode == "RGB" else (20, 20)
    Image.fromarray((RNG.random(shape) * 40 + level).astype("uint8"), mode=None).save(path)


def imagenet_layout(root: Path) -> Path:
    rows = []
    for c, wnid in enumerate(("n01440764", "n01443537")):
        for i in range(6):
            _image(root / "train" / wnid / f"{wnid}_{i}.JPEG", 60 + 100 * c)
        for i in range(2):
            _image(root / "val" / f"ILSVRC2012_val_{c}{i}.JPEG", 60 + 100 * c)
            rows.append({"ImageId": f"ILSVRC2012_val_{c}{i}", "PredictionString": f"{wnid} 1 2 3 4"})
    with open(root / "LOC_val_solution.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["ImageId", "PredictionString"])
        writer.writeheader()
        writer.writerows(rows)
    return convert.write_manifest(convert.imagenet_rows(root / "train", root / "val", root / "LOC_val_solution.csv"),
                                  root / "imagenet.csv")


def tb_layout(root: Path) -> Path:
    for c in range(2):
        for i in range(6):
            _image(root / "CXR_png" / f"MCUCXR_{c}{i:03d}_{c}.png", 60 + 100 * c, mode="L")
    return convert.write_manifest(convert.tb_cxr_rows([root / "CXR_png"]), root / "tb.csv")


def regdb_layout(root: Path) -> Path:
    """``Visible/<id>/*.bmp`` (colour) and ``Thermal/<id>/*.bmp`` (grey) + ``idx/{train,test}_{visible,thermal}_1.txt``
    ("relative/path label" lines; each split numbers its identities from 0, as published)."""
    (root / "idx").mkdir(parents=True)
    for split, people in (("train", (0, 1)), ("test", (2, 3))):
        for camera, mode in (("visible", "RGB"), ("thermal", "L")):
            lines = []
            for label, person in enumerate(people):
                for i in range(4 if split == "train" else 2):
                    rel = f"{camera.capitalize()}/{person}/{camera}_{person}_{i}.bmp"
                    _image(root / rel, 40 + 50 * person, mode=mode)
                    lines.append(f"{rel} {label}")
            (root / "idx" / f"{split}_{camera}_1.txt").write_text("\n".join(lines) + "\n")
    return convert.write_manifest(convert.regdb_rows(root, 1), root / "regdb.csv")


def folder_layout(root: Path) -> Path:
    for c in range(2):
        for i in range(5):
            _image(root / "images" / f"class{c}" / f"{i}.png", 60 + 100 * c)
    return root / "images"


def speech_commands_layout(root: Path) -> Path:
    """``<word>/<speaker>_nohash_<n>.wav`` (1 s, 16 kHz) + validation_list.txt / testing_list.txt."""
    import soundfile

    t = np.arange(16000) / 16000
    lists = {"validation_list.txt": [], "testing_list.txt": []}
    for w, word in enumerate(("yes", "no")):
        (root / word).mkdir(parents=True)
        for i in range(6):
            name = f"{i:08x}_nohash_0.wav"
            tone = np.sin(2 * np.pi * (300 + 900 * w) * t) * 0.3 + RNG.normal(0, 0.01, t.shape)
            soundfile.write(root / word / name, tone.astype("float32"), 16000)
            if i == 4:
                lists["validation_list.txt"].append(f"{word}/{name}")
            if i == 5:
                lists["testing_list.txt"].append(f"{word}/{name}")
    (root / "_background_noise_").mkdir()
    soundfile.write(root / "_background_noise_" / "white_noise.wav", RNG.normal(0, 0.1, 16000).astype("float32"), 16000)
    for name, lines in lists.items():
        (root / name).write_text("\n".join(lines) + "\n")
    return convert.write_manifest(convert.speech_commands_rows(root), root / "speech_commands.csv")


def modelnet40_layout(root: Path) -> Path:
    """``modelnet40_normal_resampled/<class>/<class>_0001.txt`` (x,y,z,nx,ny,nz) + the train/test id lists."""
    base = root / "modelnet40_normal_resampled"
    ids = {"train": [], "test": []}
    for c, name in enumerate(("airplane", "night_stand")):
        (base / name).mkdir(parents=True)
        for i in range(1, 6):
            shape_id = f"{name}_{i:04d}"
            xyz = RNG.normal(0, 1, (200, 3)) * (1, 1 + 3 * c, 0.2)
            rows = np.hstack([xyz, xyz / np.linalg.norm(xyz, axis=1, keepdims=True)])
            np.savetxt(base / name / f"{shape_id}.txt", rows, fmt="%.6f", delimiter=",")
            ids["test" if i == 5 else "train"].append(shape_id)
    for split, lines in ids.items():
        (base / f"modelnet40_{split}.txt").write_text("\n".join(lines) + "\n")
    (base / "modelnet40_shape_names.txt").write_text("airplane\nnight_stand\n")
    return convert.write_manifest(convert.modelnet40_rows(base), root / "modelnet40.csv")


def _ts_file(path: Path, dims: int, length: int, cases: int) -> None:
    lines = [f"@problemName {path.stem.split('_')[0]}", "@timeStamps false", "@missing true",
             f"@univariate {'true' if dims == 1 else 'false'}", *([f"@dimensions {dims}"] if dims > 1 else []),
             "@equalLength true", f"@seriesLength {length}", "@classLabel true walking standing", "@data"]
    for i in range(cases):
        label = ("walking", "standing")[i % 2]
        series = RNG.normal(0, 1, (dims, length)) + (3 if label == "walking" else 0) * np.sin(np.arange(length) / 3)
        values = [",".join(f"{v:.4f}" for v in row) for row in series]
        if i == 1:
            values[0] = "?," + values[0].split(",", 1)[1]  # one missing value: interpolated by the converter
        lines.append(":".join(values) + f":{label}")
    path.write_text("\n".join(lines) + "\n")


def ucr_layout(root: Path) -> Path:
    for split, cases in (("TRAIN", 10), ("TEST", 4)):
        _ts_file(root / f"GunPoint_{split}.ts", 1, 30, cases)
    return convert.write_manifest(convert.ucr_rows(root / "GunPoint_TRAIN.ts", root / "GunPoint_TEST.ts",
                                                   root / "gunpoint"), root / "gunpoint.csv")


def basicmotions_layout(root: Path) -> Path:
    for split, cases in (("TRAIN", 10), ("TEST", 4)):
        _ts_file(root / f"BasicMotions_{split}.ts", 6, 20, cases)
    return convert.write_manifest(convert.ucr_rows(root / "BasicMotions_TRAIN.ts", root / "BasicMotions_TEST.ts",
                                                   root / "basicmotions", modality="imu"), root / "basicmotions.csv")


def indian_pines_layout(root: Path, bands: int = 30) -> Path:
    """``Indian_pines_corrected.mat`` (h, w, bands) + ``Indian_pines_gt.mat`` (0 = unlabelled)."""
    from scipy.io import savemat

    gt = np.zeros((8, 8), dtype=np.uint8)
    gt[:4, :4], gt[4:, 4:], gt[:3, 5:] = 1, 2, 3
    spectra = np.stack([np.linspace(0, 1, bands) * k for k in (0.5, 1.0, 2.0, 3.0)])  # unlabelled, class 1..3
    cube = (spectra[gt] * 1000 + RNG.normal(0, 5, (8, 8, bands))).astype(np.uint16)
    savemat(root / "Indian_pines_corrected.mat", {"indian_pines_corrected": cube})
    savemat(root / "Indian_pines_gt.mat", {"indian_pines_gt": gt})
    return convert.write_manifest(convert.indian_pines_rows(root / "Indian_pines_corrected.mat",
                                                            root / "Indian_pines_gt.mat", root / "patches",
                                                            train_fraction=0.5), root / "indian_pines.csv")


def ucf101_layout(root: Path) -> Path:
    """``UCF-101/<Class>/v_<Class>_gXX_cXX.avi`` + ``ucfTrainTestlist/trainlist01.txt`` / ``testlist01.txt``."""
    import av

    train, test = [], []
    for c, name in enumerate(("ApplyEyeMakeup", "Basketball")):
        (root / "UCF-101" / name).mkdir(parents=True)
        for g in range(1, 5):
            rel = f"{name}/v_{name}_g{g:02d}_c01.avi"
            with av.open(str(root / "UCF-101" / rel), "w") as container:
                stream = container.add_stream("mpeg4", rate=8)
                stream.width = stream.height = 32
                stream.pix_fmt = "yuv420p"
                for f in range(6):
                    frame = np.full((32, 32, 3), 40 + 150 * c, np.uint8)
                    frame[:, (f * 5) % 32:(f * 5) % 32 + 4] = 255
                    for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            (test if g == 4 else train).append(f"{rel} {c + 1}" if g != 4 else rel)
    (root / "ucfTrainTestlist").mkdir()
    (root / "ucfTrainTestlist" / "trainlist01.txt").write_text("\n".join(train) + "\n")
    (root / "ucfTrainTestlist" / "testlist01.txt").write_text("\n".join(test) + "\n")
    return convert.write_manifest(convert.ucf101_rows(root / "UCF-101", root / "ucfTrainTestlist"),
                                  root / "ucf101.csv")


def mrpc_layout(root: Path) -> Path:
    """GLUE MRPC ``train.tsv`` / ``dev.tsv`` (Quality, #1 ID, #2 ID, #1 String, #2 String)."""
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    pairs = [("1", "The cat sat on the mat.", "A cat was sitting on the mat."),
             ("0", "Stocks fell sharply on Monday.", "The weather was sunny in Paris."),
             ("1", "He bought a new car.", "He purchased a new automobile."),
             ("0", "The meeting is at noon.", "Bananas are rich in potassium \"they say\".")]
    for name, rows in (("train.tsv", pairs * 2), ("dev.tsv", pairs[:2])):
        lines = [header] + [f"{q}\t{100 + i}\t{200 + i}\t{a}\t{b}" for i, (q, a, b) in enumerate(rows)]
        (root / "MRPC").mkdir(exist_ok=True)
        (root / "MRPC" / name).write_text("\n".join(lines) + "\n")
    return convert.write_manifest(convert.mrpc_rows([root / "MRPC" / "train.tsv", root / "MRPC" / "dev.tsv"],
                                                    root / "mrpc"), root / "mrpc.csv")


def graph_layout(root: Path) -> Path:
    """Per-molecule GraphML (9 atom features x0..x8, 3 bond features e0..e2) + targets.csv (id, gap, split)."""
    import networkx as nx

    (root / "graphs").mkdir()
    rows = ["id,homolumogap,split"]
    for i in range(10):
        g = nx.path_graph(4 + i % 4)
        g.add_edge(0, len(g) - 1)
        for n in g.nodes:
            g.nodes[n].update({f"x{k}": float(RNG.integers(0, 5)) for k in range(9)})
        for u, v in g.edges:
            g.edges[u, v].update({f"e{k}": float(RNG.integers(0, 3)) for k in range(3)})
        nx.write_graphml(g, root / "graphs" / f"mol{i}.graphml")
        rows.append(f"mol{i},{3 + 0.5 * len(g):.3f},{'test' if i >= 8 else 'valid' if i >= 6 else 'train'}")
    (root / "targets.csv").write_text("\n".join(rows) + "\n")
    return convert.write_manifest(convert.graph_target_rows(root / "graphs", root / "targets.csv"), root / "pcqm4m.csv")


def _adult_line(i: int) -> str:
    rich = i % 2 == 1
    work = "?" if i % 5 == 0 else ("Private", "Self-emp-not-inc", "State-gov")[i % 3]
    return (f"{30 + 3 * i % 40}, {work}, {100000 + 977 * i}, {'Masters' if rich else 'HS-grad'}, "
            f"{14 if rich else 9}, Married-civ-spouse, {'Exec-managerial' if rich else 'Sales'}, Husband, White, "
            f"Male, {5000 * rich}, 0, {50 if rich else 38}, United-States, {'>50K' if rich else '<=50K'}")


def adult_layout(root: Path) -> Path:
    """UCI ``adult.data`` / ``adult.test``: no header, ', '-separated, '?' missing, test labels end in '.'."""
    (root / "adult.data").write_text("\n".join(_adult_line(i) for i in range(24)) + "\n\n")
    (root / "adult.test").write_text("|1x3 Cross validator\n" + "".join(f"{_adult_line(i)}.\n" for i in range(6)))
    return convert.write_table(convert.adult_table(root / "adult.data", root / "adult.test"), root / "adult.csv")


def bank_layout(root: Path) -> Path:
    """UCI ``bank-full.csv``: ';'-separated, quoted header and strings, label ``y``."""
    header = ('age;"job";"marital";"education";"default";"balance";"housing";"loan";"contact";"day";"month";'
              '"duration";"campaign";"pdays";"previous";"poutcome";"y"')
    lines = [header]
    for i in range(30):
        yes = i % 3 == 0
        lines.append(f'{25 + i};"{("admin.", "technician", "unknown")[i % 3]}";"married";"secondary";"no";{100 * i};'
                     f'"yes";"no";"cellular";{1 + i % 28};"may";{600 if yes else 90};1;-1;0;"unknown";'
                     f'"{"yes" if yes else "no"}"')
    (root / "bank-full.csv").write_text("\n".join(lines) + "\n")
    return convert.write_table(convert.bank_marketing_table(root / "bank-full.csv", test_fraction=0.2),
                               root / "bank.csv")


ETT_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")


def etth1_layout(root: Path, rows: int = 130) -> Path:
    """``ETTh1.csv``: a ``date`` column (hourly, '2016-07-01 00:00:00') + the 7 load/oil-temperature columns."""
    import pandas as pd

    t = np.arange(rows)
    frame = pd.DataFrame({"date": pd.date_range("2016-07-01", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S")})
    for k, name in enumerate(ETT_COLUMNS):
        frame[name] = (5 + k + 2 * np.sin(2 * np.pi * t / 24 + k) + RNG.normal(0, 0.1, rows)).round(3)
    frame.to_csv(root / "ETTh1.csv", index=False)
    return root / "ETTh1.csv"


# the feature columns of Autoformer's weather.csv, its garbled units (U+FFFD) included
WEATHER_COLUMNS = ("p (mbar)", "T (degC)", "Tpot (K)", "Tdew (degC)", "rh (%)", "VPmax (mbar)", "VPact (mbar)",
                   "VPdef (mbar)", "sh (g/kg)", "H2OC (mmol/mol)", "rho (g/m**3)", "wv (m/s)", "max. wv (m/s)",
                   "wd (deg)", "rain (mm)", "raining (s)", "SWDR (W/m\ufffd)", "PAR (\ufffdmol/m\ufffd/s)",
                   "max. PAR (\ufffdmol/m\ufffd/s)", "Tlog (degC)", "OT")


def _autoformer_csv(path: Path, dates: list[str], columns: Sequence[str]) -> Path:
    """An Autoformer ``all_six_datasets`` file: ``date`` + the features, the target ``OT`` last."""
    import pandas as pd

    t = np.arange(len(dates))[:, None]
    k = np.arange(len(columns))
    values = 1 + k + np.sin(2 * np.pi * t / 24 + k) + RNG.normal(0, 0.1, (len(dates), len(columns)))
    frame = pd.DataFrame(values.round(4), columns=list(columns))
    frame.insert(0, "date", dates)
    frame.to_csv(path, index=False)
    return path


def traffic_layout(root: Path, rows: int = 100) -> Path:
    """``traffic.csv``: hourly from '2016-07-01 02:00:00', occupancy of 862 sensors '0' ... '860', 'OT'."""
    import pandas as pd

    dates = pd.date_range("2016-07-01 02:00", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S")
    return _autoformer_csv(root / "traffic.csv", list(dates), [*map(str, range(861)), "OT"])


def weather_layout(root: Path, rows: int = 100) -> Path:
    """``weather.csv``: every 10 minutes from '2020-01-01 00:10:00', 21 meteorological columns."""
    import pandas as pd

    dates = pd.date_range("2020-01-01 00:10", periods=rows, freq="10min").strftime("%Y-%m-%d %H:%M:%S")
    return _autoformer_csv(root / "weather.csv", list(dates), WEATHER_COLUMNS)


def exchange_rate_layout(root: Path, rows: int = 100) -> Path:
    """``exchange_rate.csv``: daily from '1990/1/1 0:00', the rates of 8 countries '0' ... '6', 'OT'."""
    import pandas as pd

    dates = [f"{d.year}/{d.month}/{d.day} 0:00" for d in pd.date_range("1990-01-01", periods=rows, freq="D")]
    return _autoformer_csv(root / "exchange_rate.csv", dates, [*map(str, range(7)), "OT"])


S3DIS_ROOM = {"ceiling_1.txt": ((0, 0, 2.5), (2, 1.5, 2.5), (200, 200, 200)),  # class file: box corners, rgb
              "floor_1.txt": ((0, 0, 0), (2, 1.5, 0), (90, 60, 40)),
              "chair_1.txt": ((0.5, 0.5, 0), (0.9, 0.9, 0.8), (200, 30, 30)),
              "stairs_1.txt": ((1.5, 0.2, 0), (1.9, 0.6, 1.0), (60, 60, 60))}  # not a class: clutter


def s3dis_layout(root: Path, val_fraction: float = 0.34, voxel_size: float = 0.04) -> Path:
    """``Stanford3dDataset_v1.2_Aligned_Version/Area_N/<room>/Annotations/<class>_<k>.txt`` (``x y z r g b`` lines,
    rooms placed in their area's frame): three 2 × 1.5 m rooms in Area_1, one in Area_5; one number with a stray
    byte, as in the published Area_5/hallway_6."""
    base = root / "Stanford3dDataset_v1.2_Aligned_Version"
    for area, rooms in (("Area_1", 3), ("Area_5", 1)):
        for r in range(rooms):
            annotations = base / area / f"office_{r + 1}" / "Annotations"
            annotations.mkdir(parents=True)
            offset = np.array([10.0 * r + 3, 4.0, 0.5])
            for name, (low, high, rgb) in S3DIS_ROOM.items():
                xyz = RNG.uniform(low, high, (60, 3)) + offset
                np.savetxt(annotations / name, np.c_[xyz, np.tile(rgb, (60, 1))], fmt="%.3f %.3f %.3f %d %d %d")
    broken = base / "Area_5" / "office_1" / "Annotations" / "ceiling_1.txt"
    lines = broken.read_bytes().split(b"\n")
    lines[3] = lines[3][:4] + b"\x10" + lines[3][4:]
    broken.write_bytes(b"\n".join(lines))
    return convert.write_manifest(convert.s3dis_rows(base, root / "blocks", val_fraction=val_fraction,
                                                     voxel_size=voxel_size), root / "s3dis.csv")


LAYOUTS = {"imagenet1k": imagenet_layout, "chest_xray_tb": tb_layout, "regdb_infrared": regdb_layout,
           "linear_probe_image": folder_layout, "speech_commands_v2": speech_commands_layout,
           "modelnet40": modelnet40_layout, "ucr_timeseries": ucr_layout, "uea_basicmotions_imu": basicmotions_layout,
           "indian_pines": indian_pines_layout, "ucf101": ucf101_layout, "glue_mrpc": mrpc_layout,
           "pcqm4m_graph": graph_layout, "adult": adult_layout, "bank_marketing": bank_layout,
           "etth1": etth1_layout, "traffic": traffic_layout, "weather": weather_layout,
           "exchange_rate": exchange_rate_layout, "s3dis_area5": s3dis_layout}
# nano-sized tokenizer options laid over each recipe's own (the recipe keeps its reference sizes)
NANO = {**{m: {"img_size": 16, "patch_size": 8} for m in ("image", "xray", "infrared")},
        "audio": {"target_length": 32}, "point_cloud": {"num_points": 64, "num_groups": 16, "group_size": 8},
        "hyperspectral": {"num_bands": 30}, "video": {"num_frames": 4, "img_size": 16, "patch_size": 8},
        "text": {"max_length": 32}, "graph": {"num_eigenvectors": 4}, "imu": {"patch_size": 5}}
# recipe settings scaled down with the data (etth1: 6-step "months", so 72/24/24 steps of 8 → 4 windows; the
# 0.7/0.1/0.2 recipes: 70/10/20 of 100 steps; traffic's lookback holds its 16-step patches)
SMALL = {"etth1": {"lookback": 8, "horizon": 4, "steps_per_month": 6}, "weather": {"lookback": 8, "horizon": 4},
         "exchange_rate": {"lookback": 8, "horizon": 4}, "traffic": {"lookback": 16, "horizon": 4}}
# what evaluate must report per task
EVAL_KEYS = {"classification": {"accuracy", "macro_f1", "OA", "AA", "kappa"}, "regression": {"MAE", "MSE"},
             "forecast": {"MAE", "MSE"}, "reid": {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"},
             "segmentation": {"OA", "mIoU", "mAcc", "per_class", "confusion_matrix"}}


def test_every_recipe_has_a_generated_layout():
    assert {p.stem for p in RECIPES} == set(LAYOUTS)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs(recipe, tmp_path):
    data = LAYOUTS[recipe.stem](tmp_path)
    reference = TrainConfig.from_yaml(recipe)
    assert reference.preset == "base" and reference.checkpoint  # the recipe itself targets the published weights
    options = {m: {**reference.tokenizer_options.get(m, {}), **NANO.get(m, {})}
               for m in {*reference.tokenizer_options, *NANO}}
    config = TrainConfig.from_yaml(recipe, data=[str(data)], preset="nano", checkpoint=None, epochs=1,
                                   batch_size=4, accumulate=1, num_workers=0, warmup_steps=0, logger="csv",
                                   precision="32-true", run_dir=str(tmp_path / "run"), tokenizer_options=options,
                                   **SMALL.get(recipe.stem, {}))
    result = train(config)
    assert (tmp_path / "run" / "model" / "config.json").is_file()
    assert result.info["splits"]["train"] > 0 and "train/loss" in result.metrics
    if reference.modality:
        assert result.info["modalities"] == [reference.modality]
    if result.info["splits"]["val"]:
        assert "val/loss" in result.metrics
    if result.info["splits"]["test"] or result.info["splits"]["val"]:  # the converted split is evaluated
        from metatransformer.training import evaluate_run

        report = evaluate_run(tmp_path / "run")
        assert report["split"] == ("test" if result.info["splits"]["test"] else "val")
        (metrics,) = report["modalities"].values()
        assert EVAL_KEYS[reference.task] <= set(metrics) and metrics["count"] == result.info["splits"][report["split"]]
    if reference.task == "reid":  # retrieval between the held-out identities' query and gallery records
        from metatransformer.training import evaluate_run

        assert {"val/rank1", "val/map", "val/minp"} <= set(result.metrics) and result.info["monitor"] == "val/rank1"
        report = evaluate_run(tmp_path / "run")
        assert set(report["directions"]) == {"query_to_gallery", "gallery_to_query"}
        for scores in report["directions"].values():
            assert EVAL_KEYS["reid"] <= set(scores) and scores["queries"] + scores["gallery"] == \
                result.info["splits"]["query"] + result.info["splits"]["gallery"]


def test_folder_converter_command_line(tmp_path, capsys):
    folder_layout(tmp_path)
    assert convert.main(["folder", str(tmp_path / "images"), "-o", str(tmp_path / "m.csv")]) == 0
    from metatransformer.training.data import load_records

    records = load_records(tmp_path / "m.csv")
    assert len(records) == 10 and {r.label for r in records} == {"class0", "class1"}
    assert not Path(next(iter(open(tmp_path / "m.csv").read().splitlines()[1:])).split(",")[0]).is_absolute()


def _rows(manifest: Path) -> list[dict]:
    with open(manifest, newline="") as handle:
        return list(csv.DictReader(handle))


def _dir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def test_converters_keep_the_published_splits_and_labels(tmp_path):
    """What the new converters write: splits from the published lists, labels, and per-sample files."""
    from metatransformer.datasets.graph import read_graph
    from metatransformer.datasets.text import read_document
    from metatransformer.datasets.time_series import read_time_series

    rows = _rows(regdb_layout(_dir(tmp_path / "regdb")))  # training identities train, test ones query / gallery
    assert {(r["split"], r["modality"]) for r in rows} == {("train", "image"), ("train", "infrared"),
                                                           ("query", "image"), ("gallery", "infrared")}
    assert [r["split"] for r in rows].count("query") == [r["split"] for r in rows].count("gallery") == 4
    identities = {split: {r["label"] for r in rows if r["split"] == split} for split in ("train", "query", "gallery")}
    assert identities == {"train": {"0", "1"}, "query": {"2", "3"}, "gallery": {"2", "3"}}  # the person folders
    assert not identities["train"] & identities["gallery"]  # the published labels restart at 0 in each list
    listed = tmp_path / "regdb" / "idx" / "test_thermal_1.txt"
    listed.write_text(listed.read_text().replace(" 1\n", " 0\n"))  # person 3's images labelled as person 2's
    with pytest.raises(ValueError, match="label 0 is given to person folders 2 and 3"):
        convert.regdb_rows(tmp_path / "regdb", 1)
    with pytest.raises(SystemExit):
        convert.main(["regdb", "--root", str(tmp_path / "regdb"), "--trial", "11", "-o", str(tmp_path / "r.csv")])

    rows = _rows(speech_commands_layout(_dir(tmp_path / "sc")))
    assert {r["split"] for r in rows} == {"train", "val", "test"} and len(rows) == 12  # noise folder left out
    assert sum(r["split"] == "val" for r in rows) == 2 and {r["label"] for r in rows} == {"yes", "no"}

    rows = _rows(modelnet40_layout(_dir(tmp_path / "mn")))
    assert {r["label"] for r in rows} == {"airplane", "night_stand"} and sum(r["split"] == "test" for r in rows) == 2

    rows = _rows(ucr_layout(_dir(tmp_path / "ucr")))
    assert len(rows) == 14 and sum(r["split"] == "test" for r in rows) == 4
    series = [read_time_series(tmp_path / "ucr" / r["path"]) for r in rows]
    assert series[0].shape == (30, 1) and all(bool(s.isfinite().all()) for s in series)  # '?' interpolated
    rows = _rows(basicmotions_layout(_dir(tmp_path / "bm")))
    assert {r["modality"] for r in rows} == {"imu"} and np.load(tmp_path / "bm" / rows[0]["path"]).shape == (20, 6)

    rows = _rows(indian_pines_layout(_dir(tmp_path / "ip")))
    assert {r["label"] for r in rows} == {"1", "2", "3"} and {r["split"] for r in rows} == {"train", "test"}
    patch = np.load(tmp_path / "ip" / rows[0]["path"])
    assert patch.shape == (1, 1, 30) and 0 <= patch.min() and patch.max() <= 1 and patch.max() > 0

    rows = _rows(ucf101_layout(_dir(tmp_path / "ucf")))
    assert [r["split"] for r in rows].count("test") == 2 and {r["label"] for r in rows} == {"ApplyEyeMakeup", "Basketball"}

    rows = _rows(mrpc_layout(_dir(tmp_path / "mrpc")))
    assert {r["split"] for r in rows} == {"train", "val"} and {r["label"] for r in rows} == {"0", "1"}
    assert read_document(tmp_path / "mrpc" / rows[0]["path"]).count("[SEP]") == 1

    rows = _rows(graph_layout(_dir(tmp_path / "graph")))
    assert {r["split"] for r in rows} == {"train", "valid", "test"}
    assert float(rows[0]["label"]) == 5.0 and read_graph(tmp_path / "graph" / rows[0]["path"]).x.shape[1] == 9


def test_hyperspectral_patches_are_read_without_rescaling(tmp_path):
    """The converter scales bands over the scene; reader_options scale=none keeps a p = 1 patch as written
    (the reader's per-file min-max would turn every band of a single pixel into 0)."""
    from metatransformer import create_model
    from metatransformer.training.data import ItemDataset, LabelEncoder, load_records

    records = load_records(indian_pines_layout(tmp_path))
    model = create_model("nano", modalities={"hyperspectral": {"num_bands": 30}})
    labels = LabelEncoder.fit("classification", [r.label for r in records])
    kept = ItemDataset(records[:1], model.tokenizer("hyperspectral"), labels, reader_options={"scale": "none"})[0][0]
    rescaled = ItemDataset(records[:1], model.tokenizer("hyperspectral"), labels)[0][0]
    written = torch.from_numpy(np.load(records[0].source)).permute(2, 0, 1)
    assert kept.shape == (30, 1, 1) and torch.equal(kept, written) and not rescaled.any()


def test_new_converters_command_line(tmp_path, capsys):
    indian_pines_layout(tmp_path)
    assert convert.main(["indian-pines", "--cube", str(tmp_path / "Indian_pines_corrected.mat"), "--labels",
                         str(tmp_path / "Indian_pines_gt.mat"), "--patch-size", "3", "--train-fraction", "0.3",
                         "--out-dir", str(tmp_path / "p3"), "-o", str(tmp_path / "p3.csv")]) == 0
    rows = _rows(tmp_path / "p3.csv")
    assert np.load(tmp_path / rows[0]["path"]).shape == (3, 3, 30) and "wrote" in capsys.readouterr().out


def test_table_converters_and_row_records(tmp_path):
    """Adult / Bank Marketing tables: one record per row, the label out of the features, the schema fitted on the
    training rows only and carried by the tokenizer option; items are one-row TableBatches collated by concat."""
    import pandas as pd

    from metatransformer import create_model
    from metatransformer.datasets.tabular import TableBatch
    from metatransformer.training.api import with_table_schemas
    from metatransformer.training.data import ItemDataset, LabelEncoder, ModalityCollate, load_records

    table = pd.read_csv(adult_layout(_dir(tmp_path / "adult")))
    assert list(table.columns) == [*convert.ADULT_COLUMNS, "split"] and len(table) == 30
    assert set(table["income"]) == {"<=50K", ">50K"} and (table["split"] == "test").sum() == 6  # '.' removed
    assert table["workclass"].isna().sum() == 7  # '?' is missing
    assert convert.main(["adult", "--data", str(tmp_path / "adult" / "adult.data"), "--test",
                         str(tmp_path / "adult" / "adult.test"), "-o", str(tmp_path / "cli.csv")]) == 0
    assert pd.read_csv(tmp_path / "cli.csv").equals(table)
    bank = pd.read_csv(bank_layout(_dir(tmp_path / "bank")))
    assert set(bank["y"]) == {"yes", "no"} and (bank["split"] == "test").sum() == 6

    path = tmp_path / "adult" / "adult.csv"
    table.loc[table["split"] == "test", "race"] = "Other"  # a category only the test rows have
    table.to_csv(path, index=False)
    records = load_records(path, label_column="income")
    assert len(records) == 30 and {r.modality for r in records} == {"tabular"}
    train_rows = [r for r in records if r.split == "train"]
    config = TrainConfig(data=[str(path)], label_column="income", categorical_columns=["education_num"])
    schema = with_table_schemas(config, train_rows).tokenizer_options["tabular"]["schema"]
    assert config.tokenizer_options == {}  # the recipe itself is left as given
    columns = [c["name"] for c in schema["numeric"] + schema["categorical"]]
    assert "income" not in columns and "split" not in columns and len(columns) == 14
    assert "education_num" in [c["name"] for c in schema["categorical"]]
    age = next(c for c in schema["numeric"] if c["name"] == "age")
    assert age["mean"] == pytest.approx(table.loc[table["split"] == "train", "age"].mean())
    assert next(c for c in schema["categorical"] if c["name"] == "race")["categories"] == ["White"]

    model = create_model("nano", modalities={"tabular": {"schema": schema}})
    labels = LabelEncoder.fit("classification", [r.label for r in train_rows])
    test = ItemDataset([r for r in records if r.split == "test"], model.tokenizer("tabular"), labels)
    item, target = test[0]
    assert isinstance(item, TableBatch) and item.num_rows == 1 and int(target) == 0
    batch, targets = ModalityCollate("tabular")([test[i] for i in range(4)])
    race = columns.index("race") - len(schema["numeric"])
    assert batch.num_rows == 4 and targets.tolist() == [0, 1, 0, 1] and (batch.categorical[:, race] == 0).all()
    assert model.forward_features({"tabular": batch}).tokens.shape[:2] == (4, 15)  # cls + 14 columns


def test_forecast_windows_records(tmp_path):
    """ETTh1 layout → ett_splits windows as records (train statistics standardise every split), window items
    collated by the time_series collate, and the forecast head sized by the tokenizer's tokens."""
    from metatransformer import create_model
    from metatransformer.training.api import fit_labels, make_dataset, prepare_records
    from metatransformer.training.data import ModalityCollate
    from metatransformer.training.forecast import forecast_head_options

    config = TrainConfig(data=[str(etth1_layout(tmp_path))], task="forecast", lookback=8, horizon=4,
                         window_stride=2, steps_per_month=6)
    records = prepare_records(config)
    counts = {s: sum(r.split == s for r in records) for s in ("train", "val", "test")}
    assert counts == {"train": 31, "val": 11, "test": 11}  # (72 - 12) // 2 + 1; (24 + 8 - 12) // 2 + 1
    train = [r for r in records if r.split == "train"]
    labels = fit_labels(config, train)
    assert labels.task == "forecast" and labels.classes == list(ETT_COLUMNS) and labels.num_outputs == 7
    window, target = make_dataset(config, train, None, labels)[1]
    assert window.shape == (8, 7) and target.shape == (4, 7)
    series = train[0].source.windows.series
    assert torch.allclose(series.mean(0), torch.zeros(7), atol=1e-5) and torch.equal(window, series[2:10])
    batch, targets = ModalityCollate("time_series")([make_dataset(config, train, None, labels)[i] for i in range(3)])
    assert batch.values.shape == (3, 8, 7) and targets.shape == (3, 4, 7)
    model = create_model("nano", modalities={"time_series": {"in_chans": 7, "tokens": "patch", "patch_len": 4,
                                                             "patch_stride": 2}})
    assert forecast_head_options(config, model.tokenizer("time_series"), 7)["num_tokens"] == 4
    with pytest.raises(ValueError, match="forecast"):
        TrainConfig(task="forecast", linear_probe=True)


def test_ratio_split_records_and_options(tmp_path):
    """split_ratios: Autoformer's Dataset_Custom parts (70/10/20 of 100 steps, val and test windows starting a
    lookback early), weather.csv's column names (garbled units included) as the channels; the ratios are checked
    and exclude a month split."""
    from metatransformer.training.api import fit_labels, prepare_records

    config = TrainConfig(data=[str(weather_layout(tmp_path))], task="forecast", lookback=8, horizon=4,
                         split_ratios=["0.7", "0.1", "0.2"])  # the command line gives strings
    assert config.split_ratios == [0.7, 0.1, 0.2]
    records = prepare_records(config)
    counts = {s: sum(r.split == s for r in records) for s in ("train", "val", "test")}
    assert counts == {"train": 70 - 12 + 1, "val": 10 - 4 + 1, "test": 20 - 4 + 1}
    train = [r for r in records if r.split == "train"]
    assert fit_labels(config, train).classes == list(WEATHER_COLUMNS)
    series = train[0].source.windows.series
    assert series.shape == (70, 21) and torch.allclose(series.mean(0), torch.zeros(21), atol=1e-5)
    val = next(r for r in records if r.split == "val").source
    assert val.windows.series.shape == (18, 21) and torch.equal(val.windows[0][0], val.windows.series[:8])
    assert TrainConfig(task="forecast", split_ratios=[0.7, 0.1, 0.2], split_months=["12", "4", "4"]).split_ratios
    for bad in ([0.7, 0.3], [0.8, 0.1, 0.2], [0.7, 0.0, 0.3], ["x", 0.5, 0.5]):
        with pytest.raises(ValueError, match="three positive fractions"):
            TrainConfig(task="forecast", split_ratios=bad)
    for months in ({"split_months": [10, 2, 2]}, {"steps_per_month": 24}):
        with pytest.raises(ValueError, match="replaces the month split"):
            TrainConfig(task="forecast", split_ratios=[0.7, 0.1, 0.2], **months)


def test_a_series_too_short_for_its_split_is_named(tmp_path):
    """The split's errors count steps; the records' error names the file they came from."""
    from metatransformer.training.forecast import records_from_series

    path = etth1_layout(tmp_path, rows=60)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: the split needs 120 steps"):
        records_from_series(path, lookback=8, horizon=4, steps_per_month=6)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: the val part has 6 steps, too few"):
        records_from_series(path, lookback=8, horizon=8, ratios=[0.7, 0.1, 0.2])


def test_s3dis_converter_blocks_labels_and_splits(tmp_path, capsys):
    """Every point of a room in one 1 m block, relative to the block centre and the room floor, with its colour
    and its class (stairs → clutter; the stray byte read as the number); Area 5 → test, one whole room → val."""
    rows = _rows(s3dis_layout(tmp_path, voxel_size=0.0))
    assert {r["split"] for r in rows if "Area_5" in r["path"]} == {"test"} and {r["label"] for r in rows} == {""}
    splits = {Path(r["path"]).name.rsplit("_", 2)[0]: r["split"] for r in rows if "Area_1" in r["path"]}
    assert sorted(splits.values()) == ["train", "train", "val"]
    assert all(r["split"] == splits[Path(r["path"]).name.rsplit("_", 2)[0]] for r in rows if "Area_1" in r["path"])
    base = tmp_path / "Stanford3dDataset_v1.2_Aligned_Version"
    for room in ("Area_5/office_1", "Area_1/office_2"):
        blocks = [np.load(tmp_path / r["path"]) for r in rows if r["path"].startswith(f"blocks/{room}_")]
        assert len(blocks) == 4  # 2 × 1.5 m in 1 m blocks
        points = np.concatenate([b["points"] for b in blocks])
        assert np.abs(points[:, :2]).max() <= 0.5 + 1e-6 and points[:, 2].min() == pytest.approx(0.0, abs=1e-6)
        labels = np.concatenate([b["labels"] for b in blocks])
        classes = convert.S3DIS_CLASSES
        counts = {classes[c]: n for c, n in zip(*np.unique(labels, return_counts=True))}
        assert counts == {"ceiling": 60, "floor": 60, "chair": 60, "clutter": 60}
        colors = np.concatenate([b["colors"] for b in blocks])
        for name, (_, _, rgb) in S3DIS_ROOM.items():
            label = classes.index(name.split("_")[0]) if name != "stairs_1.txt" else classes.index("clutter")
            assert (colors[labels == label] == rgb).all()
    written = np.concatenate([np.loadtxt(f) for f in (base / "Area_1/office_2/Annotations").glob("*.txt")])
    np.testing.assert_allclose(np.sort(points[:, 2]), np.sort(written[:, 2]) - written[:, 2].min(), atol=1e-5)
    broken = base / "Area_5/office_1/Annotations/ceiling_1.txt"
    clean = np.loadtxt(broken.read_bytes().replace(b"\x10", b"").decode().splitlines())
    np.testing.assert_array_equal(convert._s3dis_points(broken), clean)
    voxelled = _rows(s3dis_layout(_dir(tmp_path / "voxel")))
    assert len(voxelled) == len(rows)
    assert convert.main(["s3dis", str(base), "--out-dir", str(tmp_path / "cli"), "--block-size", "0",
                         "--voxel-size", "0", "-o", str(tmp_path / "rooms.csv")]) == 0
    rooms = _rows(tmp_path / "rooms.csv")
    assert len(rooms) == 4 and "wrote" in capsys.readouterr().out
    room = np.load(tmp_path / rooms[-1]["path"])
    assert room["points"].shape == (240, 3) and room["labels"].dtype.kind == "i"
