"""End to end on tiny data: CLI train → checkpoints → evaluate; two modalities; pathway → merge; linear probe
on cached features; bf16 + accumulation; the trainable sets; every command's --help."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from metatransformer import MetaTransformer
from metatransformer.cli import build_parser, main
from metatransformer.training import TrainConfig, build_model, train
from metatransformer.training.api import rebuild_from_checkpoint
from metatransformer.training.data import LabelEncoder

from .conftest import TINY


def _flags(options: dict) -> list[str]:
    out = []
    for key, value in options.items():
        out += [f"--{key.replace('_', '-')}", json.dumps(value) if isinstance(value, dict) else str(value)]
    return out


@pytest.fixture(scope="module")
def image_run(image_dir, tmp_path_factory, capsys_module=None):
    run_dir = tmp_path_factory.mktemp("run") / "image"
    code = main(["train", "--data", str(image_dir), *_flags(TINY), "--epochs", "3", "--run-dir", str(run_dir)])
    assert code == 0
    return run_dir


def test_cli_train_writes_checkpoints_logs_and_a_pretrained_model(image_run):
    info = json.loads((image_run / "run.json").read_text())
    assert info["labels"]["classes"] == ["c0", "c1", "c2"] and info["modalities"] == ["image"]
    assert Path(info["best_checkpoint"]).is_file() and (image_run / "checkpoints" / "last.ckpt").is_file()
    assert info["parameters"]["encoder_trainable"] == 0 and info["parameters"]["heads_trainable"] > 0
    assert info["metrics"]["val/acc"] >= 0.5  # above chance (1/3) on an easy task
    assert TrainConfig.from_yaml(image_run / "config.yaml").preset == "nano"
    assert (image_run / "logs" / "version_0" / "metrics.csv").is_file()
    model = MetaTransformer.from_pretrained(image_run / "model")
    last = rebuild_from_checkpoint(image_run, image_run / "checkpoints" / "last.ckpt")
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(model("image", x, head="image"), last.eval()("image", x, head="image"))


def test_cli_evaluate_writes_the_report(image_run, capsys):
    assert main(["evaluate", str(image_run)]) == 0
    assert "accuracy" in capsys.readouterr().out
    out = image_run / "eval-val"
    results = json.loads((out / "results.json").read_text())["modalities"]["image"]
    assert {"accuracy", "macro_f1", "OA", "AA", "kappa", "per_class", "confusion_matrix"} <= set(results)
    assert sum(map(sum, results["confusion_matrix"])) == results["count"]
    for name in ("results.md", "confusion_image.png", "curves.png", "per_class_image.csv"):
        assert (out / name).stat().st_size > 0
    assert "| accuracy |" in (out / "results.md").read_text()


def test_start_from_a_saved_model_and_evaluate_other_data(image_run, image_dir, tmp_path):
    result = train({**TINY, "data": [str(image_dir)], "epochs": 1, "model": str(image_run / "model"),
                    "run_dir": str(tmp_path)})
    start = MetaTransformer.from_pretrained(image_run / "model")
    torch.testing.assert_close(result.model.tokenizers.image.patch_embed.weight.detach().clone() * 0,
                               start.tokenizers.image.patch_embed.weight * 0)  # same architecture
    assert not torch.equal(result.model.heads.image.fc.weight, start.heads.image.fc.weight)  # a new head
    from metatransformer.training.evaluate import evaluate_run

    results = evaluate_run(tmp_path, data=[str(image_dir)], output=tmp_path / "other")
    assert results["split"] == "all" and results["modalities"]["image"]["count"] == 24


def test_two_modalities_in_one_run(image_dir, thermal_dir, tmp_path):
    result = train({**TINY, "data": [str(image_dir), str(thermal_dir)], "epochs": 1, "run_dir": str(tmp_path)})
    assert set(result.model.heads) == {"image", "infrared"} and len(result.model.tokenizers) == 2
    assert {"val/image/acc", "val/infrared/acc", "val/acc"} <= set(result.metrics)
    from metatransformer.training.evaluate import evaluate_run

    assert set(evaluate_run(tmp_path)["modalities"]) == {"image", "infrared"}


def test_pathway_run_then_merge(image_run, image_dir, tmp_path):
    run = tmp_path / "pathway"
    assert main(["train", "--data", str(image_dir), *_flags(TINY), "--epochs", "1", "--finetune", "full",
                 "--aux", str(image_run / "model"), "--no-aux-trainable", "--aux-lambda-lr", "0.05",
                 "--run-dir", str(run)]) == 0
    info = json.loads((run / "run.json").read_text())
    assert "Multimodal Pathway: 8 layers" in info["pathway"]
    unmerged = rebuild_from_checkpoint(run, run / "checkpoints" / "last.ckpt").eval()
    scales = [p for n, p in unmerged.named_parameters() if "scales" in n]
    assert scales and any(float(s.abs().max()) > 0 for s in scales)  # λ trained from 0
    assert all(not p.requires_grad for n, p in unmerged.named_parameters() if "aux_weights" in n)
    assert main(["merge", str(run), str(tmp_path / "merged")]) == 0
    merged = MetaTransformer.from_pretrained(tmp_path / "merged").eval()
    x = torch.rand(3, 3, 16, 16)
    torch.testing.assert_close(merged("image", x, head="image"), unmerged("image", x, head="image"),
                               atol=1e-5, rtol=1e-5)


def test_random_control_needs_no_aux_checkpoint(tmp_path):
    config = TrainConfig(**TINY, aux_control="random", run_dir=str(tmp_path))
    model, report = build_model(config, LabelEncoder("classification", ["a", "b"], 2), ["image"])
    assert report.layers == 8 and report.trainable_parameters_added > 0


def test_pathway_save_reload_unmerged_resume_merge(image_dir, tmp_path):
    first = train({**TINY, "data": [str(image_dir)], "epochs": 1, "aux_control": "random", "finetune": "full",
                   "run_dir": str(tmp_path / "a")})
    reloaded = MetaTransformer.from_pretrained(tmp_path / "a" / "model")
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(reloaded.eval()("image", x, head="image"), first.model.eval()("image", x, head="image"))
    second = train({**TINY, "data": [str(image_dir)], "epochs": 2, "aux_control": "random", "finetune": "full",
                    "run_dir": str(tmp_path / "a"), "resume": "last"})
    assert second.info["global_step"] > first.info["global_step"]
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "m")]) == 0
    MetaTransformer.from_pretrained(tmp_path / "m")


def test_linear_probe_caches_features_and_reuses_them(image_dir, tmp_path):
    options = {**TINY, "data": [str(image_dir)], "epochs": 2, "linear_probe": True,
               "cache_dir": str(tmp_path / "cache")}
    first = train({**options, "run_dir": str(tmp_path / "a")})
    second = train({**options, "run_dir": str(tmp_path / "b")})
    assert first.info["linear_probe"]["from_cache"] is False and second.info["linear_probe"]["from_cache"] is True
    assert len(list((tmp_path / "cache").glob("image-*.safetensors"))) == 2  # train + val
    counts = first.info["parameters"]
    assert counts["trainable"] == counts["heads_trainable"]
    assert first.metrics["val/acc"] == second.metrics["val/acc"]
    assert first.metrics["val/loss"] == pytest.approx(second.metrics["val/loss"], abs=1e-6)


def test_unfreeze_last_and_full_trainable_sets():
    labels = LabelEncoder("classification", ["a", "b"], 2)
    model, _ = build_model(TrainConfig(**TINY, unfreeze_last=1), labels, ["image"])
    trainable = {n.split(".")[1] for n, p in model.encoder.named_parameters() if p.requires_grad}
    assert trainable == {"1"}
    model, _ = build_model(TrainConfig(**TINY, finetune="full"), labels, ["image"])
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="linear-probe"):
        TrainConfig(linear_probe=True, finetune="full")


def test_per_modality_options_are_keyed_by_canonical_modality_names(image_dir):
    """Option keys may be aliases (the run looks options up by canonical names, so an alias key used to be
    silently unused): they reach the modality's dataset."""
    from metatransformer.training.api import make_dataset
    from metatransformer.training.data import load_records

    config = TrainConfig(augment=True, augment_options={"RGB": {"scale": [0.2, 0.5]}},
                         reader_options={"vision": {"channels": 3}},
                         tokenizer_options={"rgb": {"img_size": 16, "patch_size": 8}, "Points": {"num_points": 64}})
    assert config.augment_options == {"image": {"scale": [0.2, 0.5]}}
    assert config.reader_options == {"image": {"channels": 3}}
    assert config.tokenizer_options == {"image": {"img_size": 16, "patch_size": 8}, "point_cloud": {"num_points": 64}}
    records = load_records(image_dir)[:2]
    labels = LabelEncoder.fit("classification", [r.label for r in records])
    model, _ = build_model(dataclasses.replace(config, preset="nano"), labels, ["image"])
    assert model.tokenizer("image").img_size == 16
    dataset = make_dataset(config, records, model.tokenizer("image"), labels, augment=True)
    assert dataset.augment_options == {"scale": [0.2, 0.5]} and dataset.reader_options == {"channels": 3}
    with pytest.raises(ValueError, match="two keys name modality 'image'"):
        TrainConfig(tokenizer_options={"rgb": {}, "image": {}})


@pytest.mark.parametrize("options, message", [
    ({"reader_options": {"smell": {}}}, r"--reader-options: unknown modality 'smell'"),
    ({"tokenizer_options": {"image": 16}}, r"--tokenizer-options: the options of 'image' must be a mapping"),
    ({"augment_options": {"image": {"scale": [0.2, 0.5]}}}, "set --augment"),
    ({"augment": True, "augment_options": {"point_cloud": {"jiter": 0.01}}},
     r"the point_cloud augmentation has no option\(s\) \['jiter'\]; it takes scale, translate, jitter"),
    ({"augment": True, "augment_options": {"text": {}}}, "modality 'text' has no training augmentation"),
    ({"lookback": 48}, "--lookback shape forecasting windows and splits: they apply to task forecast, not "
                       "classification"),
    ({"task": "regression", "split_ratios": [0.7, 0.1, 0.2], "split_months": [10, 2, 2]},
     "--split-months, --split-ratios shape forecasting"),
])
def test_recipe_option_checks(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)


def test_an_augmentation_with_variable_keywords_takes_any_option(monkeypatch):
    from metatransformer.registry import MODALITIES, get_modality

    spec = dataclasses.replace(get_modality("image"), augment=lambda tokenizer, **options: None)
    monkeypatch.setitem(MODALITIES._entries, "image", spec)
    assert TrainConfig(augment=True, augment_options={"image": {"anything": 1}}).augment_options == \
        {"image": {"anything": 1}}


def test_bf16_autocast_and_gradient_accumulation(image_dir, tmp_path, capsys):
    result = train({**TINY, "data": [str(image_dir)], "epochs": 1, "precision": "bf16-mixed", "accumulate": 2,
                    "run_dir": str(tmp_path)})
    assert "parameters: 13,123 trainable, 99,968 frozen" in capsys.readouterr().out  # printed at the start
    assert result.info["global_step"] == 3  # 5 batches of 4 (19 train images), stepping every 2
    assert torch.isfinite(torch.tensor(result.metrics["val/loss"]))


def test_recipe_file_with_flag_overrides(image_dir, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: [{image_dir}]\npreset: base\nepochs: 7\n")
    args = build_parser().parse_args(["train", "--config", str(recipe), "--preset", "nano"])
    from metatransformer.training.commands import config_from_args

    config = config_from_args(args)
    assert (config.preset, config.epochs, config.data) == ("nano", 7, [str(image_dir)])


@pytest.mark.parametrize("command", ["train", "evaluate", "merge"])
def test_help_is_complete(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    if command == "train":
        for f in dataclasses.fields(TrainConfig):
            assert f"--{f.name.replace('_', '-')}" in text
        assert "--config" in text and "--no-aux-trainable" in text
    else:
        assert "run_dir" in text and "--checkpoint" in text
    if command == "evaluate":
        assert "--temporal-views" in text and "--spatial-views" in text


def test_a_modality_without_validation_records_leaves_the_others_named_right(image_dir, thermal_dir, tmp_path):
    manifest = tmp_path / "images.csv"  # every image record is a training record: image has no val loader
    rows = [f"{p},{p.parent.name},train" for p in sorted(image_dir.rglob("*.png"))]
    manifest.write_text("path,label,split\n" + "\n".join(rows) + "\n")
    result = train({**TINY, "data": [str(manifest), str(thermal_dir)], "epochs": 1, "run_dir": str(tmp_path / "run")})
    assert "val/infrared/acc" in result.metrics and "val/image/acc" not in result.metrics
    assert result.info["splits"]["val"] > 0
