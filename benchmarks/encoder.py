"""Our shared encoder against timm's VisionTransformer blocks with the same weights.

Prints forward throughput (sequences/s) of both at batch 8 x 197 tokens and their ratio, and the
achieved GFLOP/s against a square float32 matmul measured in the same process (the practical limit).

    python benchmarks/encoder.py [--preset base] [--batch 8] [--tokens 197] [--repeats 5] [--device cpu]
"""
from __future__ import annotations


import torch
from timm.models.vision_transformer import VisionTransformer

from _timing import benchmark_parser, interleaved_medians, matmul_gflops
from metatransformer.encoders import create_encoder, get_encoder_config


def encoder_flops(dim: int, mlp_hidden: int, depth: int, batch: int, tokens: int) -> int:
    """Multiply-adds x 2 of the blocks: qkv, proj and MLP matmuls plus the two attention products."""
    linear = 2 * tokens * dim * (3 * dim + dim + 2 * mlp_hidden)
    attention = 2 * 2 * tokens * tokens * dim
    return batch * depth * (linear + attention)


def main() -> None:
    args = benchmark_parser(__doc__, preset="base").parse_args()
    device = torch.device(args.device)
    config = get_encoder_config(args.preset)

    reference = VisionTransformer(embed_dim=config.dim, depth=config.depth, num_heads=config.num_heads,
                                  mlp_ratio=config.mlp_ratio, qkv_bias=config.qkv_bias)
    timm_blocks = reference.blocks.to(device).eval()
    ours = create_encoder(config, checkpoint=reference.state_dict(), strict=False).to(device).eval()
    x = torch.randn(args.batch, args.tokens, config.dim, device=device)

    with torch.inference_mode():
        seconds = interleaved_medians({"timm": lambda: timm_blocks(x), "ours": lambda: ours(x)},
                                      repeats=args.repeats, device=device)
        assert (ours(x) - timm_blocks(x)).abs().max() < 1e-4, "the two encoders disagree"
    peak = matmul_gflops(device=device)
    flops = encoder_flops(config.dim, config.mlp_hidden_dim, config.depth, args.batch, args.tokens)

    print(f"device={device} preset={args.preset} batch={args.batch} tokens={args.tokens} "
          f"threads={torch.get_num_threads()} repeats={args.repeats}")
    for name in ("timm", "ours"):
        print(f"{name:>5}: {seconds[name] * 1e3:9.1f} ms/forward  {args.batch / seconds[name]:8.2f} seq/s  "
              f"{flops / seconds[name] / 1e9:8.1f} GFLOP/s")
    print(f"throughput ratio ours/timm: {seconds['timm'] / seconds['ours']:.3f}")
    print(f"square fp32 matmul: {peak:.1f} GFLOP/s; ours achieves {flops / seconds['ours'] / 1e9 / peak:.2f} of it")


if __name__ == "__main__":
    main()
