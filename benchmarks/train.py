#!/usr/bin/env python
"""Training-cost benchmark at base width (one short run; each case in a fresh process for honest peak memory).

    frozen vs full     optimizer-step time and peak extra memory (activations + gradients + AdamW state)
                       of tokenizer+head training on the frozen encoder vs full fine-tuning
                       (goals: ≤ 0.75× time, ≤ 0.5× memory)
    linear probe       one epoch on cached features vs one epoch that re-encodes (goal ≥ 20×)
    pathway vs plain   full fine-tuning step with a (frozen-aux, learned-λ) pathway vs without (goal ≤ 1.10×)

    python benchmarks/train.py [--preset base] [--img-size 224] [--batch 4] [--steps 3]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package


def _rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build_case(case: str, preset: str, img_size: int, batch: int):
    """(step function, trainable parameter count) of one case."""
    import torch

    from metatransformer.training import TrainConfig, build_model
    from metatransformer.training.data import LabelEncoder
    from metatransformer.training.module import make_optimizer

    torch.manual_seed(0)
    options = {"preset": preset, "tokenizer_options": {"image": {"img_size": img_size, "patch_size": 16}}}
    if case == "frozen":
        config = TrainConfig(**options)
    elif case == "full":
        config = TrainConfig(**options, finetune="full")
    elif case == "pathway":
        config = TrainConfig(**options, finetune="full", aux_control="random", aux_trainable=False)
    else:
        raise ValueError(case)
    labels = LabelEncoder("classification", [str(i) for i in range(10)], 10)
    model, _ = build_model(config, labels, ["image"])
    model.train()
    optimizer = make_optimizer(model, config)  # the trainer's (fused) AdamW
    x, y = torch.randn(batch, 3, img_size, img_size), torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = model.heads["image"].loss(model("image", x, head="image"), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, sum(p.numel() for p in model.parameters() if p.requires_grad)


def run_case(case: str, preset: str, img_size: int, batch: int, steps: int) -> dict:
    step, trainable = build_case(case, preset, img_size, batch)
    base = _rss_mib()
    step()  # warm-up (allocates AdamW state)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"case": case, "step_s": sorted(times)[len(times) // 2], "peak_extra_mib": peak - base,
            "trainable": trainable}


def run_interleaved(preset: str, img_size: int, batch: int, steps: int) -> dict:
    """Step times of the three cases measured in turns in one process, so load from other processes on a
    shared machine hits them alike."""
    cases = ("frozen", "full", "pathway")
    steps_of = {case: build_case(case, preset, img_size, batch)[0] for case in cases}
    times: dict[str, list[float]] = {case: [] for case in cases}
    for case in cases:
        steps_of[case]()  # warm-up
    for _ in range(steps):
        for case in cases:
            start = time.perf_counter()
            steps_of[case]()
            times[case].append(time.perf_counter() - start)
    return {"case": "interleaved", **{f"{c}_step_s": sorted(t)[len(t) // 2] for c, t in times.items()}}


def run_probe(preset: str, img_size: int, batch: int, samples: int, epochs: int) -> dict:
    import torch

    from metatransformer import create_model
    from metatransformer.data2seq import TokenSequence

    torch.manual_seed(0)
    model = create_model(preset, modalities={"image": {"img_size": img_size, "patch_size": 16}},
                         heads={"image": {"kind": "classification", "num_classes": 10}}).eval()
    head = model.heads["image"].train()
    data = torch.randn(samples, 3, img_size, img_size)
    y = torch.randint(0, 10, (samples,))
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)

    def head_step(features: TokenSequence, target: torch.Tensor) -> None:
        loss = head.loss(head(features), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    start = time.perf_counter()  # one re-encoding epoch (what training without the cache costs every epoch)
    cached = []
    for i in range(0, samples, batch):
        with torch.no_grad():
            features = model.forward_features({"image": data[i:i + batch]})
        cached.append((features.tokens[:, :1].clone(), features.mask[:, :1].clone(), features.prefix[:1].clone()))
        head_step(TokenSequence(*cached[-1][:2], prefix=cached[-1][2], modalities=("image",)), y[i:i + batch])
    encode_epoch = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(epochs):
        for j, (tokens, mask, prefix) in enumerate(cached):
            head_step(TokenSequence(tokens, mask, prefix=prefix, modalities=("image",)), y[j * batch:(j + 1) * batch])
    cached_epoch = (time.perf_counter() - start) / epochs
    return {"case": "probe", "encode_epoch_s": encode_epoch, "cached_epoch_s": cached_epoch,
            "speedup": encode_epoch / cached_epoch}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="base")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--probe-samples", type=int, default=16)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        if args.case == "probe":
            result = run_probe(args.preset, args.img_size, args.batch, args.probe_samples, 5)
        elif args.case == "interleaved":
            result = run_interleaved(args.preset, args.img_size, args.batch, args.steps)
        else:
            result = run_case(args.case, args.preset, args.img_size, args.batch, args.steps)
        print(json.dumps(result))
        return 0
    results = {}
    for case in ("frozen", "full", "pathway", "probe", "interleaved"):
        out = subprocess.run([sys.executable, __file__, "--case", case, "--preset", args.preset, "--img-size",
                              str(args.img_size), "--batch", str(args.batch), "--steps", str(args.steps),
                              "--probe-samples", str(args.probe_samples)],
                             capture_output=True, text=True, check=True).stdout
        results[case] = json.loads(out.strip().splitlines()[-1])
        print(json.dumps(results[case]), flush=True)
    f, u, pr, t = results["frozen"], results["full"], results["probe"], results["interleaved"]
    print(f"\n{args.preset}, {args.img_size}px, batch {args.batch}, median of {args.steps} interleaved steps")
    print(f"frozen / full   step time {t['frozen_step_s'] / t['full_step_s']:.2f}x (goal <= 0.75), "
          f"peak extra memory {f['peak_extra_mib'] / u['peak_extra_mib']:.2f}x (goal <= 0.5)")
    print(f"linear probe    cached epoch {pr['speedup']:.0f}x faster than re-encoding (goal >= 20)")
    print(f"pathway / plain full fine-tuning step {t['pathway_step_s'] / t['full_step_s']:.2f}x (goal <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
