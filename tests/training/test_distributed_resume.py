"""Slow: 2-process CPU DDP (gloo) matches 1 process at the same global batch; a run killed mid-epoch and
resumed with --resume ends with the same metrics as an uninterrupted run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from .conftest import TINY, write_images

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cli(args, env=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "metatransformer", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT, **(env or {})}, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _flags(options):
    out = []
    for key, value in options.items():
        out += [f"--{key.replace('_', '-')}", json.dumps(value) if isinstance(value, dict) else str(value)]
    return out


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    """Lightning's own launcher (ddp), ddp_spawn and torchrun (Lightning's TorchElastic cluster environment, the
    multi-node path) all give the 1-process run at the same global batch; 3 validation samples over 2 processes:
    the sample repeated to even out the ranks is not counted twice."""
    data = write_images(tmp_path / "img", classes=3, per_class=5)
    common = {**TINY, "finetune": "full", "epochs": 2, "val_fraction": 0.2, "accelerator": "cpu",
              "scheduler": "none"}
    one = {**common, "batch_size": 4, "devices": "1", "run_dir": str(tmp_path / "one")}
    _cli(["train", "--data", str(data), *_flags(one)])
    a = json.loads((tmp_path / "one" / "run.json").read_text())
    assert a["global_step"] == 6 and a["splits"]["val"] == 3
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "metatransformer"]
    for launcher, strategy in (("lightning", "ddp"), ("lightning", "ddp_spawn"), ("torchrun", "ddp")):
        run_dir = tmp_path / f"{launcher}-{strategy}"
        two = {**common, "batch_size": 2, "devices": "2", "strategy": strategy, "run_dir": str(run_dir)}
        args = ["train", "--data", str(data), *_flags(two)]
        if launcher == "torchrun":
            proc = subprocess.run([*torchrun, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                                  env={**os.environ, "PYTHONPATH": ROOT})
            assert proc.returncode == 0, proc.stderr[-3000:]
        else:
            _cli(args)
        b = json.loads((run_dir / "run.json").read_text())
        assert b["global_step"] == 6, (launcher, strategy)
        for name in ("val/loss", "val/acc", "train/loss"):
            assert b["metrics"][name] == pytest.approx(a["metrics"][name], rel=1e-4, abs=1e-5), (launcher, strategy)


@pytest.mark.slow
def test_a_validation_set_smaller_than_the_process_count_does_not_hang(tmp_path):
    """1 validation sample over 2 processes: rank 1's share is all padding; both ranks still reduce together."""
    data = write_images(tmp_path / "img", classes=2, per_class=4)
    files = sorted(p for p in data.rglob("*") if p.is_file())
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,split\n" + "\n".join(
        f"{f},{f.parent.name},{'val' if i == 0 else 'train'}" for i, f in enumerate(files)) + "\n")
    options = {**TINY, "batch_size": 2, "epochs": 1, "accelerator": "cpu", "devices": "2", "strategy": "ddp",
               "run_dir": str(tmp_path / "run")}
    proc = subprocess.run([sys.executable, "-m", "metatransformer", "train", "--data", str(manifest), *_flags(options)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["splits"]["val"] == 1 and "val/acc" in info["metrics"]


KILLER = textwrap.dedent("""
    import os, sys, json
    from lightning.pytorch.callbacks import Callback
    from metatransformer.training import train

    class Kill(Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == int(sys.argv[2]):
                os._exit(17)  # a hard kill: no cleanup, no final checkpoint

    train(json.loads(sys.argv[1]), callbacks=[Kill()])
""")


@pytest.mark.slow
def test_kill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    data = write_images(tmp_path / "img", classes=3, per_class=8)
    common = {**TINY, "data": [str(data)], "finetune": "full", "epochs": 2, "checkpoint_every_n_steps": 1}
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    full = {**common, "run_dir": str(tmp_path / "full")}
    _cli(["train", "--data", str(data), *_flags({k: v for k, v in full.items() if k != "data"})])
    killed = {**common, "run_dir": str(tmp_path / "killed")}
    proc = subprocess.run([sys.executable, str(script), json.dumps(killed), "7"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 17, proc.stderr[-3000:]  # killed in epoch 2 (5 batches per epoch)
    assert not (tmp_path / "killed" / "run.json").exists()
    _cli(["train", "--data", str(data), *_flags({k: v for k, v in killed.items() if k != "data"}), "--resume", "last"])
    a = json.loads((tmp_path / "full" / "run.json").read_text())
    b = json.loads((tmp_path / "killed" / "run.json").read_text())
    assert a["global_step"] == b["global_step"] == 10
    for key in ("val/loss", "val/acc", "val/f1"):  # (the epoch-mean train/loss of a resumed epoch covers its
        # post-resume batches only: Lightning does not checkpoint running epoch aggregates)
        assert b["metrics"][key] == pytest.approx(a["metrics"][key], rel=1e-5, abs=1e-6), key
    from metatransformer import MetaTransformer

    wa = MetaTransformer.from_pretrained(tmp_path / "full" / "model").state_dict()
    wb = MetaTransformer.from_pretrained(tmp_path / "killed" / "model").state_dict()
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=1e-5, atol=1e-6, msg=key)
