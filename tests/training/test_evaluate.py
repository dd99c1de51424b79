"""Metric definitions (against hand computations), regression / multi-label runs from in-memory tensors, and
multi-view (clips × crops) video testing."""
from __future__ import annotations

import json

import pytest
import torch

from metatransformer.training import TrainConfig, train
from metatransformer.training.api import make_dataset
from metatransformer.training.data import assign_splits, records_from_tensors
from metatransformer.training.evaluate import (
    ViewDataset,
    compute_metrics,
    evaluate_run,
    predict,
    predict_views,
)

from .conftest import TINY


def test_classification_metrics_by_hand():
    target = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 0, 0, 1, 1, 1, 2, 0])
    m = compute_metrics("classification", torch.nn.functional.one_hot(preds, 3).float(), target, ["a", "b", "c"])
    assert m["accuracy"] == m["OA"] == pytest.approx(6 / 8)
    assert m["AA"] == pytest.approx((3 / 4 + 1 + 1 / 2) / 3)
    po, pe = 6 / 8, (4 * 4 + 2 * 3 + 2 * 1) / 64  # Cohen's kappa
    assert m["kappa"] == pytest.approx((po - pe) / (1 - pe), abs=1e-6)
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 2, 0], [1, 0, 1]]
    f1 = [2 * 3 / (2 * 3 + 1 + 1), 2 * 2 / (2 * 2 + 1), 2 * 1 / (2 * 1 + 1)]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3, abs=1e-6)
    assert [row["support"] for row in m["per_class"]] == [4, 2, 2]


def test_multilabel_and_regression_metrics():
    target = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]])
    logits = torch.tensor([[3.0, -1], [-2, 2], [1, 0.5], [-1, -3]])
    assert compute_metrics("multilabel", logits, target, ["x", "y"])["mAP"] == pytest.approx(1.0)
    reg = compute_metrics("regression", torch.tensor([[1.0], [2.0]]), torch.tensor([1.5, 2.0]), [])
    assert reg["MAE"] == pytest.approx(0.25) and reg["MSE"] == pytest.approx(0.125)


def test_regression_from_in_memory_tensors(tmp_path):
    images = torch.rand(12, 3, 16, 16)
    records = records_from_tensors(images, images.mean((1, 2, 3)).tolist(), modality="image")
    result = train({**TINY, "task": "regression", "epochs": 1, "run_dir": str(tmp_path)}, records=records)
    assert {"val/mae", "val/mse"} <= set(result.metrics) and result.info["labels"]["num_outputs"] == 1


def test_multilabel_from_in_memory_tensors(tmp_path):
    labels = ["a|b", "a", "b", "b|c"] * 3
    records = records_from_tensors(torch.rand(12, 3, 16, 16), labels, modality="image")
    result = train({**TINY, "task": "multilabel", "epochs": 1, "run_dir": str(tmp_path)}, records=records)
    assert "val/map" in result.metrics and result.info["labels"]["classes"] == ["a", "b", "c"]


# ------------------------------------------------------------------------------- multi-view testing (video)
# the reader reads 8 frames every 3 (room for training's temporal jitter), the tokenizer takes 4
VIDEO = {"tokenizer_options": {"video": {"num_frames": 4, "img_size": 16, "patch_size": 8}},
         "reader_options": {"video": {"num_frames": 8, "stride": 3}}}


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    """6 clips of 30 frames at 25 fps (2 classes: dark and bright moving squares), one epoch."""
    pytest.importorskip("av")
    from tests.datasets.test_video import moving_square, write_video

    root = tmp_path_factory.mktemp("videos")
    for c in range(2):
        (root / f"c{c}").mkdir()
        for i in range(3):
            frames = moving_square(30, height=32, width=40) // (1 + c) + 10 * i
            write_video(root / f"c{c}" / f"{i}.mp4", frames.astype("uint8"))
    run_dir = tmp_path_factory.mktemp("video-run")
    train({**TINY, **VIDEO, "data": [str(root)], "epochs": 1, "val_fraction": 0.4, "run_dir": str(run_dir)})
    return run_dir


def _val(run_dir):
    from metatransformer.training.api import load_run_model
    from metatransformer.training.data import LabelEncoder, load_records

    config = TrainConfig.from_yaml(run_dir / "config.yaml")
    info = json.loads((run_dir / "run.json").read_text())
    records = assign_splits(load_records(config.data[0]), val_fraction=config.val_fraction, seed=config.seed)
    model, _ = load_run_model(run_dir)
    return config, model, [r for r in records if r.split == "val"], LabelEncoder(**info["labels"])


def test_one_by_one_views_are_the_single_view(video_run):
    """One clip: the centre window of the default read (frames 0, 3, ..., 21: the centre 4 are frames 6 ... 15),
    which is the clip read at that window's start."""
    from metatransformer.data2seq import get_modality
    from metatransformer.datasets import read_video

    config, model, records, labels = _val(video_run)
    tokenizer = model.tokenizer("video")
    dataset = make_dataset(config, records, tokenizer, labels)
    fit = get_modality("video").transform(tokenizer)
    for i, record in enumerate(records):
        centre = fit(read_video(record.source, num_frames=4, stride=3, start=6 / 25))
        torch.testing.assert_close(dataset[i][0].frames, centre.frames)
    single, targets = predict(model, dataset)
    views = ViewDataset(records, tokenizer, labels, temporal=1, spatial=1, reader_options=config.reader_options["video"])
    combined, same = predict_views(model, views, task="classification")
    torch.testing.assert_close(combined.softmax(-1), single.softmax(-1))
    assert torch.equal(same, targets)
    plain = evaluate_run(video_run, output=video_run / "a")["modalities"]["video"]
    one = evaluate_run(video_run, output=video_run / "b", temporal_views=1, spatial_views=1)["modalities"]["video"]
    assert {k: v for k, v in plain.items() if k != "confusion_png"} == \
        {k: v for k, v in one.items() if k != "confusion_png"}


def test_temporal_views_average_the_softmax_of_clips_read_at_their_starts(video_run):
    from metatransformer.data2seq import get_modality
    from metatransformer.datasets import read_video

    config, model, records, labels = _val(video_run)
    tokenizer = model.tokenizer("video")
    views = ViewDataset(records, tokenizer, labels, temporal=3, spatial=1, reader_options=config.reader_options["video"])
    combined, _ = predict_views(model, views, task="classification", batch_size=4)  # one sample a batch
    fit = get_modality("video").transform(tokenizer)
    for record, prediction in zip(records, combined):
        # clips of the tokenizer's 4 frames, (4 - 1) · 3 + 1 = 10 frames long, in 30: starts at frames 0, 10, 20
        # (25 fps), each read at 4 frames (not the reader's 8, whose centre window would start 6 frames later)
        clips = [fit(read_video(record.source, num_frames=4, stride=3, start=start)) for start in (0.0, 0.4, 0.8)]
        batch = get_modality("video").collate(clips)
        with torch.inference_mode():
            probs = model("video", batch, head="video").softmax(-1)
        torch.testing.assert_close(prediction.softmax(-1), probs.mean(0))
        assert not torch.allclose(probs[0], probs[2])  # the clips differ


def test_evaluate_with_clips_and_crops_from_the_command_line(video_run, capsys):
    from metatransformer.cli import main

    assert main(["evaluate", str(video_run), "--temporal-views", "2", "--spatial-views", "3",
                 "--output", str(video_run / "views")]) == 0
    results = json.loads((video_run / "views" / "results.json").read_text())
    assert results["views"] == {"temporal": 2, "spatial": 3} and results["modalities"]["video"]["count"] == 2
    assert "views: 2 temporal × 3 spatial" in (video_run / "views" / "results.md").read_text()
    with pytest.raises(ValueError, match="1 \\(centre\\) or 3"):
        evaluate_run(video_run, spatial_views=2)
    _, model, records, labels = _val(video_run)
    with pytest.raises(ValueError, match="give the video reader a stride"):
        ViewDataset(records, model.tokenizer("video"), labels, temporal=2, spatial=1)


def test_views_need_a_modality_that_has_them(tmp_path):
    records = records_from_tensors(torch.rand(4, 3, 16, 16), ["a", "b"] * 2, modality="image")
    with pytest.raises(ValueError, match="no test-time views"):
        ViewDataset(records, None, None, temporal=2, spatial=1)


@pytest.mark.parametrize("temporal, spatial", [(0, 1), (1, 0), (-2, 3)])
def test_fewer_than_one_view_is_refused(tmp_path, temporal, spatial):
    with pytest.raises(ValueError, match=rf"--temporal-views and --spatial-views must be >= 1 .* got {temporal} "
                                         rf"and {spatial}"):
        evaluate_run(tmp_path, temporal_views=temporal, spatial_views=spatial)


def test_a_wrong_view_count_names_the_file(tmp_path):
    from metatransformer.data2seq import create_tokenizer
    from metatransformer.training.data import LabelEncoder, Record

    tokenizer = create_tokenizer("video", 8, img_size=16, patch_size=8, num_frames=4)
    records = [Record(str(tmp_path / "clip.mp4"), "a", "video", "test")]
    views = ViewDataset(records, tokenizer, LabelEncoder.fit("classification", ["a"]), temporal=1, spatial=3)
    views._views = lambda path: ["one view"]  # a views hook that gives fewer views than asked
    with pytest.raises(ValueError, match=rf"{tmp_path / 'clip.mp4'}: the video views gave 1 items, expected 3"):
        views[0]

