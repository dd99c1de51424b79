"""The ``metatransformer`` command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from .encoders import CheckpointError, convert_checkpoint, convert_state_dict, read_state_dict
from .encoders.config import list_encoder_presets, presets_matching
from .registry import get_modality, list_modalities


def _convert(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in {"act": args.act, "norm_eps": args.norm_eps}.items() if v is not None}
    out = convert_checkpoint(args.source, args.output, config=args.preset, **overrides)
    print(f"wrote {out / 'config.json'} and {out / 'model.safetensors'}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from .encoders.factory import read_checkpoint_source
    from .pretrained import PRETRAINED, file_sha256, get_pretrained, is_pretrained_name, weights_path

    report: dict = {}
    target = args.checkpoint
    if not Path(target).exists() and is_pretrained_name(target):
        entry = get_pretrained(target)
        report["pretrained"] = entry.to_dict()
        report["preprocessing"] = report["pretrained"]["preprocessing"]
        try:
            target = weights_path(entry, local_files_only=True)
        except CheckpointError as err:
            report["cached"] = None
            report["note"] = str(err)
            print(json.dumps(report, indent=2))
            return 0
        report["cached"] = str(target)
    source = read_checkpoint_source(target)
    converted = source.converted
    stems = {name: sorted(found[1]) for name in list_modalities()
             if (found := get_modality(name).tokenizer.stem_from_checkpoint(converted.extras, converted.source_format))}
    report.update({
        "format": converted.source_format,
        "depth": converted.depth,
        "dim": converted.dim,
        "mlp_hidden_dim": converted.mlp_hidden_dim,
        "fits_presets": presets_matching(converted.dim, converted.depth),
        "final_norm": "norm.weight" in converted.encoder,
        "tokenizer_stems": stems,
        "unused_keys": converted.unused,
    })
    if source.document is not None:  # a directory we wrote
        document = source.document
        report["directory"] = "model" if document.get("tokenizers") else "encoder"
        report["encoder"] = document.get("encoder")
        report["preprocessing"] = {m: {k: o[k] for k in _PREPROCESSING_OPTIONS if k in o}
                                   for m, o in (document.get("tokenizers") or {}).items()
                                   if any(k in o for k in ("mean", "std"))}
        if document.get("tokenizers"):
            report["tokenizers"] = sorted(document["tokenizers"])
            report["heads"] = sorted(document.get("heads") or {})
            report["freeze_encoder"] = document.get("freeze_encoder", True)
            report["trainable_blocks"] = document.get("trainable_blocks")
    elif "pretrained" not in report:
        digest = file_sha256(target)
        match = next((PRETRAINED.get(n) for n in PRETRAINED.names() if PRETRAINED.get(n).sha256 == digest), None)
        report["sha256"] = digest
        report["pretrained_match"] = match.name if match else None
        report["preprocessing"] = (match.preprocessing.to_dict() if match and match.preprocessing else None)
        if report["preprocessing"] is None:
            report["note"] = ("a bare checkpoint file records no preprocessing; the image-like tokenizers default to "
                              "CLIP mean/std at 224, bicubic, crop 1.0")
    print(json.dumps(report, indent=2))
    return 0


_PREPROCESSING_OPTIONS = ("mean", "std", "img_size", "interpolation", "crop_pct")


def _weights(args: argparse.Namespace) -> int:
    from .pretrained import PRETRAINED

    entries = [PRETRAINED.get(name) for name in PRETRAINED.names()]
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    for e in entries:
        where = {"hub": f"hub {e.hf_repo}/{e.filename}", "package": f"pip {e.package}",
                 "manual": f"manual download ({e.filename})"}[e.source]
        checks = "sha256" if e.sha256 else "no checksum"
        print(f"{e.name:24} {e.preset or '-':6} {where:75} {checks:11} "
              f"{'verified' if e.verified else 'unverified'}  {e.license}")
        print(f"{'':24} {e.description}")
    return 0


def _embed(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from .embed import collect_files, embed_files, known_suffixes
    from .model import MetaTransformer, create_model
    from .registry import canonical_modality, modality_for_suffix
    from .serialization import atomic_write, is_checkpoint_dir, read_checkpoint_config

    given = [flag for flag in ("model", "checkpoint", "pretrained") if getattr(args, flag)]
    if len(given) > 1:
        raise ValueError(f"pass one of --model, --checkpoint, --pretrained (got {', '.join('--' + g for g in given)})")
    source = args.model or args.checkpoint
    saved = list(read_checkpoint_config(source).get("tokenizers") or {}) if source and is_checkpoint_dir(source) else []
    modality = args.modality or (saved[0] if len(saved) == 1 else None)
    if modality is None:  # infer it from the files' suffixes
        inferred = {modality_for_suffix(f.suffix) for f in collect_files(args.inputs, known_suffixes())}
        if len(inferred) != 1 or None in inferred:
            raise ValueError(f"cannot infer one modality from the files' suffixes ({sorted(map(str, inferred))}); "
                             "pass --modality")
        modality = inferred.pop()
    modality = canonical_modality(modality)
    files = collect_files(args.inputs, known_suffixes(modality))
    output = Path(args.output).resolve()
    if output.suffix != ".safetensors":
        raise ValueError(f"--output {output} must end in .safetensors (the index is written beside it as .json)")
    if output in {f.resolve() for f in files} or output.with_suffix(".json") in {f.resolve() for f in files}:
        raise ValueError(f"--output {output} would overwrite an input file")
    if args.pretrained:
        model = create_model(args.preset, modalities=[modality], pretrained=args.pretrained,
                             stem_checkpoint=args.stem_checkpoint)
    elif modality in saved:
        model = MetaTransformer.from_pretrained(source)  # a saved model with this modality: use it whole
    else:
        if source is None:
            print("warning: no --pretrained, --checkpoint or --model given; the encoder has random weights",
                  file=sys.stderr)
        model = create_model(args.preset, modalities=[modality], checkpoint=source, stem_checkpoint=args.stem_checkpoint)
    model.to(args.device).eval()
    result = embed_files(model, modality, files, batch_size=args.batch_size, pool=args.pool)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(output, lambda tmp: save_file({"embeddings": result.embeddings.contiguous()}, tmp))
    index = output.with_suffix(".json")
    text = json.dumps({"modality": modality, "dim": int(result.embeddings.shape[1]),
                       "files": result.paths, "errors": result.errors}, indent=2) + "\n"
    atomic_write(index, lambda tmp: Path(tmp).write_text(text))
    print(f"embedded {len(result.paths)} of {len(files)} files -> {output} ({tuple(result.embeddings.shape)}), "
          f"index {index}; {len(result.errors)} skipped (reasons in the index)")
    return 0 if result.paths or not files else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metatransformer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser("convert", help="convert an encoder checkpoint to safetensors + config.json")
    convert.add_argument("source", help="Meta-Transformer .pth, timm or OpenCLIP state dict (.pth/.pt/.bin/.safetensors), "
                                        "a directory we wrote, or a published weights name")
    convert.add_argument("output", help="output directory")
    convert.add_argument("--preset", choices=list_encoder_presets(), help="architecture (default: the one that fits)")
    convert.add_argument("--act", choices=["gelu", "quick_gelu"], help="activation (quick_gelu for OpenAI CLIP blocks)")
    convert.add_argument("--norm-eps", type=float, help="LayerNorm eps (default 1e-5)")
    convert.set_defaults(run=_convert)

    embed = commands.add_parser("embed", help="embed files (or folders of files) into one safetensors file")
    embed.add_argument("inputs", nargs="+", help="files or directories")
    embed.add_argument("--modality", help=f"modality of the files ({', '.join(list_modalities())}); by default "
                                          "the --model's only modality, else inferred from the files' suffixes")
    embed.add_argument("--preset", choices=list_encoder_presets(),
                       help="architecture (default: the weights', or the one the checkpoint fits, else base)")
    embed.add_argument("--pretrained", metavar="NAME", help="published weights (see `metatransformer weights`), "
                                                            "with their stems and preprocessing")
    embed.add_argument("--checkpoint", help="weights in any format: Meta-Transformer/timm/OpenCLIP file, or a "
                                            "directory written by save_pretrained, save_encoder, convert, export_merged")
    embed.add_argument("--model", help="a saved model directory (its tokenizers and preprocessing are used); "
                                       "any --checkpoint form works too")
    embed.add_argument("--stem-checkpoint", help="a full timm/OpenCLIP ViT to take the image-like stem from")
    embed.add_argument("--pool", choices=["cls", "mean", "max"],
                       help="pooling (default: cls when the tokenizer has a cls token, else mean over content tokens)")
    embed.add_argument("--batch-size", type=int, default=32, help="items per forward pass (>= 1)")
    embed.add_argument("--device", default="cpu")
    embed.add_argument("--output", default="embeddings.safetensors")
    embed.set_defaults(run=_embed)

    inspect = commands.add_parser("inspect", help="a checkpoint's format, shape, stems and preprocessing")
    inspect.add_argument("checkpoint", help="a checkpoint file, a directory we wrote, or a published weights name")
    inspect.set_defaults(run=_inspect)

    weights = commands.add_parser("weights", aliases=["list-pretrained"],
                                  help="the published weights: source, checksum, architecture, license")
    weights.add_argument("--json", action="store_true", help="every field of every entry, as JSON")
    weights.set_defaults(run=_weights)

    from .training.commands import add_commands  # train, evaluate, merge (Lightning is imported when they run)

    add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
