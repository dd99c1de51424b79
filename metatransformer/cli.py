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
    converted = convert_state_dict(read_state_dict(args.checkpoint))
    stems = {name: sorted(found[1]) for name in list_modalities()
             if (found := get_modality(name).tokenizer.stem_from_checkpoint(converted.extras, converted.source_format))}
    print(json.dumps({
        "format": converted.source_format,
        "depth": converted.depth,
        "dim": converted.dim,
        "mlp_hidden_dim": converted.mlp_hidden_dim,
        "fits_presets": presets_matching(converted.dim, converted.depth),
        "final_norm": "norm.weight" in converted.encoder,
        "tokenizer_stems": stems,
        "unused_keys": converted.unused,
    }, indent=2))
    return 0


def _embed(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from .embed import collect_files, embed_files, known_suffixes
    from .model import MetaTransformer, create_model
    from .registry import canonical_modality, modality_for_suffix
    from .serialization import atomic_write

    files = collect_files(args.inputs, known_suffixes(args.modality))
    modality = args.modality
    if modality is None:
        inferred = {modality_for_suffix(f.suffix) for f in files}
        if len(inferred) != 1 or None in inferred:
            raise ValueError(f"cannot infer one modality from the files' suffixes ({sorted(map(str, inferred))}); "
                             "pass --modality")
        modality = inferred.pop()
    modality = canonical_modality(modality)
    output = Path(args.output).resolve()
    if output.suffix != ".safetensors":
        raise ValueError(f"--output {output} must end in .safetensors (the index is written beside it as .json)")
    if output in {f.resolve() for f in files} or output.with_suffix(".json") in {f.resolve() for f in files}:
        raise ValueError(f"--output {output} would overwrite an input file")
    if args.model:
        model = MetaTransformer.from_pretrained(args.model)
    else:
        if args.checkpoint is None:
            print("warning: no --checkpoint or --model given; the encoder has random weights", file=sys.stderr)
        model = create_model(args.preset, modalities=[modality], checkpoint=args.checkpoint)
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
    convert.add_argument("source", help="Meta-Transformer .pth, timm or OpenCLIP state dict (.pth/.pt/.bin/.safetensors)")
    convert.add_argument("output", help="output directory")
    convert.add_argument("--preset", choices=list_encoder_presets(), help="architecture (default: the one that fits)")
    convert.add_argument("--act", choices=["gelu", "quick_gelu"], help="activation (quick_gelu for OpenAI CLIP blocks)")
    convert.add_argument("--norm-eps", type=float, help="LayerNorm eps (default 1e-5)")
    convert.set_defaults(run=_convert)

    embed = commands.add_parser("embed", help="embed files (or folders of files) into one safetensors file")
    embed.add_argument("inputs", nargs="+", help="files or directories")
    embed.add_argument("--modality", help=f"modality of the files ({', '.join(list_modalities())}); "
                                          "inferred from the suffixes when omitted")
    embed.add_argument("--preset", default="base", choices=list_encoder_presets())
    embed.add_argument("--checkpoint", help="encoder checkpoint (Meta-Transformer, timm, OpenCLIP or ours)")
    embed.add_argument("--model", help="a directory written by MetaTransformer.save_pretrained (overrides --preset)")
    embed.add_argument("--pool", choices=["cls", "mean", "max"], help="pooling (default: cls)")
    embed.add_argument("--batch-size", type=int, default=32)
    embed.add_argument("--device", default="cpu")
    embed.add_argument("--output", default="embeddings.safetensors")
    embed.set_defaults(run=_embed)

    inspect = commands.add_parser("inspect", help="detect a checkpoint's format and shape")
    inspect.add_argument("checkpoint")
    inspect.set_defaults(run=_inspect)

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
