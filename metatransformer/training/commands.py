"""``metatransformer train | evaluate | merge``: argparse subcommands registered by :mod:`metatransformer.cli`.

``train`` flags are generated from :class:`~metatransformer.training.config.TrainConfig` (one flag per field,
``_`` → ``-``); ``--config recipe.yaml`` loads a recipe and flags given on the command line override it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from typing import Any

from .._optional import require
from .config import TrainConfig, field_default, field_types

_SUPPRESS = argparse.SUPPRESS


def _flag_kwargs(hint: Any, default: Any) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return _flag_kwargs(inner[0], default)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is typing.Literal:
        return {"choices": list(args), "type": type(args[0])}
    if hint is list or origin is list:
        return {"nargs": "+"}
    if hint is dict or origin is dict:
        return {"type": json.loads, "metavar": "JSON"}
    return {"type": hint}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML recipe (configs/*.yaml); command-line flags override its values")
    hints = field_types()
    for f in dataclasses.fields(TrainConfig):
        default = field_default(f)
        kwargs = _flag_kwargs(hints[f.name], default)
        # defaults are suppressed so that only flags actually given override the recipe
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=_SUPPRESS,
                            help=f"{f.metadata.get('help', '')} (default: {default!r})", **kwargs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    if args.config:
        return TrainConfig.from_yaml(args.config, **given)
    return TrainConfig.from_dict(given)


def _train(args: argparse.Namespace) -> int:
    require("lightning.pytorch"), require("torchmetrics")  # name the extra when they are missing
    from .api import train

    config = config_from_args(args)
    result = train(config)
    if not result.is_global_zero:
        return 0
    shown = {k: round(v, 4) for k, v in result.metrics.items() if k.startswith("val/")}
    print(f"run: {result.run_dir}  best: {result.best_checkpoint}  model: {result.run_dir / 'model'}\n"
          f"validation: {json.dumps(shown)}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    require("lightning.pytorch"), require("torchmetrics"), require("matplotlib")
    from .evaluate import evaluate_run

    results = evaluate_run(args.run_dir, data=args.data, split=args.split, checkpoint=args.checkpoint,
                           output=args.output, batch_size=args.batch_size, device=args.device,
                           temporal_views=args.temporal_views, spatial_views=args.spatial_views)
    for modality, res in results["modalities"].items():
        scalars = {k: round(v, 4) for k, v in res.items() if isinstance(v, float)}
        print(f"{modality} ({res['count']} {results['split']} samples): {json.dumps(scalars)}")
    for direction, res in results.get("directions", {}).items():
        scores = {k: round(v, 4) for k, v in res.items() if isinstance(v, float)}
        print(f"{direction} ({res['queries']} queries, {res['gallery']} gallery): {json.dumps(scores)}")
    print(f"report: {results['output']}/results.md")
    return 0


def _merge(args: argparse.Namespace) -> int:
    require("lightning.pytorch")
    from .api import merge_run

    out, layers = merge_run(args.run_dir, args.output, checkpoint=args.checkpoint)
    print(f"merged {layers} pathway layers; wrote {out} (loads with MetaTransformer.from_pretrained)")
    return 0


def add_commands(commands: Any) -> None:
    """Register ``train``, ``evaluate`` and ``merge`` on the CLI's subparsers."""
    train = commands.add_parser(
        "train", help="train tokenizers + heads (frozen encoder), fine-tune, or train a Multimodal Pathway",
        description="Train on folder-per-class trees or manifests. Writes RUN_DIR/{config.yaml, run.json, "
                    "checkpoints/{best,last}.ckpt, logs/, model/}.")
    add_train_arguments(train)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser(
        "evaluate", help="metrics, per-class report, confusion matrix and curves of a training run",
        description="Writes results.json, results.md, confusion_<modality>.png, per_class_<modality>.csv and "
                    "curves.png to OUTPUT (default RUN_DIR/eval-SPLIT). A reid run: Rank-1/5/10/20, mAP and mINP "
                    "of each retrieval direction (query→gallery, gallery→query) in RUN_DIR/eval-retrieval.")
    evaluate.add_argument("run_dir", help="a folder written by `metatransformer train`")
    evaluate.add_argument("--data", nargs="+", help="folders or manifests to evaluate on (default: the run's data)")
    evaluate.add_argument("--split", choices=["test", "val", "train", "all"],
                          help="split (default: test when the data has one, else val; --data without splits: all; "
                               "a reid run: its query and gallery records)")
    evaluate.add_argument("--checkpoint", default="final",
                          help="final (RUN_DIR/model), best, last, or a .ckpt path (default: final)")
    evaluate.add_argument("--output", help="report folder (default RUN_DIR/eval-SPLIT)")
    evaluate.add_argument("--batch-size", type=int, help="batch size (default: the run's)")
    evaluate.add_argument("--device", default="cpu", help="device (default: cpu)")
    evaluate.add_argument("--temporal-views", type=int, default=1, metavar="N",
                          help="test-time views along time, e.g. video: N clips spaced uniformly over each file "
                               "(needs the reader's stride); softmaxes averaged (default: 1)")
    evaluate.add_argument("--spatial-views", type=int, default=1, metavar="M",
                          help="test-time views in space, e.g. video: 1 (centre) or 3 (start/centre/end of the "
                               "long side) crops of each clip (default: 1)")
    evaluate.set_defaults(run=_evaluate)

    merge = commands.add_parser(
        "merge", help="fold a pathway run's auxiliary weights into a plain model (W <- W + λ·W_aux)",
        description="Reads RUN_DIR's model (or its checkpoint), merges every pathway layer and writes OUT with "
                    "save_pretrained: the original architecture and keys, zero inference cost.")
    merge.add_argument("run_dir", help="a pathway run folder")
    merge.add_argument("output", help="output folder")
    merge.add_argument("--checkpoint", default="final", help="final, best, last or a .ckpt path (default: final)")
    merge.set_defaults(run=_merge)
