"""The audio front end (read → resample → fbank → tokens) against torchaudio's Kaldi fbank alone.

Writes ``--clips`` WAV files of ``--seconds`` of noise at ``--rate`` Hz (stereo), then times, on the
same clips and interleaved:

- ``fbank``: :func:`torchaudio.compliance.kaldi.fbank` with the reference settings on waveforms
  already in memory at 16 kHz (the baseline: the work the front end cannot avoid);
- ``frontend``: ``read_audio`` (decode, mono mix, resample) → ``fbank_transform`` (fbank, pad to
  1024 frames, normalise) → ``pad_collate`` → ``AudioTokenizer`` (``--dim``, on ``--device``);
- ``frontend-no-tokens``: the same without the tokenizer, to show where the time goes.

Prints clips/s of each and the ratio frontend / fbank (1.0 = the front end adds nothing).

    python benchmarks/audio_frontend.py [--clips 16] [--seconds 10] [--rate 16000] [--dim 768] [--device cpu]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch
from torchaudio.compliance import kaldi

from _timing import interleaved_medians, synchronize
from metatransformer.batching import pad_collate
from metatransformer.data2seq import AudioTokenizer
from metatransformer.data2seq.audio import audio_transform
from metatransformer.datasets.audio import read_audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=16000, help="sample rate of the files written")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(args.clips):
            paths.append(Path(folder) / f"clip{i}.wav")
            soundfile.write(paths[-1], 0.1 * rng.standard_normal((int(args.seconds * args.rate), 2)), args.rate)
        waves = [read_audio(p) for p in paths]  # the baseline's input: decoded, 16 kHz mono
        tokenizer = AudioTokenizer(dim=args.dim).to(device).eval()
        transform = audio_transform(tokenizer)

        def fbank_only() -> None:
            for wave in waves:
                kaldi.fbank(wave.unsqueeze(0), htk_compat=True, sample_frequency=16000, use_energy=False,
                            window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)

        def features() -> object:
            return pad_collate([transform(read_audio(p)) for p in paths])

        def frontend() -> None:
            batch = features()
            tokenizer(type(batch)(batch.values.to(device), batch.mask.to(device)))
            synchronize(device)

        with torch.inference_mode():
            seconds = interleaved_medians({"fbank": fbank_only, "frontend": frontend, "frontend-no-tokens": features},
                                          repeats=args.repeats, device=device)
    print(f"clips={args.clips} x {args.seconds:g} s at {args.rate} Hz stereo, tokens dim={args.dim} on {device}, "
          f"threads={torch.get_num_threads()}, repeats={args.repeats}")
    for name, value in seconds.items():
        print(f"{name:>19}: {args.clips / value:8.1f} clips/s  ({value / args.clips * 1e3:.2f} ms/clip)")
    print(f"ratio frontend / fbank (clips/s): {seconds['fbank'] / seconds['frontend']:.3f}")
    print(f"ratio frontend-no-tokens / fbank: {seconds['fbank'] / seconds['frontend-no-tokens']:.3f}")


if __name__ == "__main__":
    main()
