"""Batch mixup / cutmix: timm's Mixup on every batch layout, soft-target cross-entropy, the recipe's checks,
and a run that trains with augmentation and mixup."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy

from metatransformer.batching import Padded
from metatransformer.datasets import VideoClip
from metatransformer.heads import create_head
from metatransformer.training import TrainConfig, train
from metatransformer.training.data import records_from_tensors
from metatransformer.training.mixing import BatchMixer, batch_mixers

from .conftest import TINY

TARGET = torch.tensor([0, 1, 2, 1, 0, 2])


@pytest.mark.parametrize("seed", range(4))
def test_image_batches_mix_as_timm_mixup_on_the_same_seed(seed):
    images = torch.rand(6, 3, 8, 8)
    np.random.seed(seed)
    ours, soft = BatchMixer("cutmix", 3, mixup=0.8, cutmix=1.0, label_smoothing=0.1)(images.clone(), TARGET)
    np.random.seed(seed)
    theirs, reference = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=3)(images.clone(),
                                                                                                     TARGET)
    assert torch.equal(ours, theirs) and torch.equal(soft, reference)
    torch.testing.assert_close(soft.sum(1), torch.ones(6))


def test_clips_get_one_cutmix_box_for_every_frame():
    frames = torch.rand(6, 3, 4, 8, 8)
    np.random.seed(0)
    mixer = BatchMixer("cutmix", 3, mixup=0.0, cutmix=1.0)
    clip, soft = mixer(VideoClip(frames.clone(), torch.ones(6, 4, dtype=torch.bool)), TARGET)
    np.random.seed(0)
    flat, reference = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=3)(
        frames.clone().reshape(6, 12, 8, 8), TARGET)
    assert torch.equal(clip.frames, flat.reshape(frames.shape)) and torch.equal(soft, reference)
    changed = clip.frames != frames  # b c t h w
    box = changed[0, 0, 0]
    assert box.any() and all(torch.equal(changed[0, c, t], box) for c in range(3) for t in range(4))


def test_padded_batches_take_plain_mixup_and_a_joint_mask():
    values = torch.rand(6, 10, 5)
    mask = torch.arange(10) < torch.tensor([[3], [10], [5], [7], [10], [2]])
    np.random.seed(1)
    mixer = BatchMixer("mixup", 3, mixup=0.8, cutmix=1.0)  # cutmix is never used on such batches
    mixed, soft = mixer(Padded(values.clone(), mask), TARGET)
    np.random.seed(1)
    theirs, reference = Mixup(mixup_alpha=0.8, label_smoothing=0.0, num_classes=3)(values.clone(), TARGET)
    assert torch.equal(mixed.values, theirs) and torch.equal(soft, reference) and mixer.mixer.lam < 1
    assert torch.equal(mixed.mask, mask | mask.flip(0))
    unmixed, soft = BatchMixer("mixup", 3, mixup=0.8, prob=0.0)(Padded(values.clone(), mask), TARGET)
    assert torch.equal(unmixed.mask, mask) and torch.equal(unmixed.values, values)
    assert torch.equal(soft, torch.nn.functional.one_hot(TARGET, 3).float())


def test_a_plain_values_mask_pair_is_mixed_as_a_named_one():
    """ModalitySpec.mixing allows a plain (values, mask) tuple as the batch: it comes back as one."""
    values = torch.rand(6, 10, 5)
    mask = torch.arange(10) < torch.tensor([[3], [10], [5], [7], [10], [2]])
    np.random.seed(1)
    named, named_soft = BatchMixer("mixup", 3, mixup=0.8)(Padded(values.clone(), mask), TARGET)
    np.random.seed(1)
    plain, soft = BatchMixer("mixup", 3, mixup=0.8)((values.clone(), mask), TARGET)
    assert type(plain) is tuple and len(plain) == 2 and torch.equal(soft, named_soft)
    assert torch.equal(plain[0], named.values) and torch.equal(plain[1], named.mask)


def test_classification_loss_takes_soft_targets():
    head = create_head("classification", dim=8, num_classes=3, label_smoothing=0.1)
    logits = torch.randn(6, 3)
    soft = torch.softmax(torch.randn(6, 3), -1)
    torch.testing.assert_close(head.loss(logits, soft), SoftTargetCrossEntropy()(logits, soft))
    smoothed = torch.nn.functional.one_hot(TARGET, 3) * 0.9 + 0.1 / 3  # hard labels: smoothed by the head
    torch.testing.assert_close(head.loss(logits, TARGET), SoftTargetCrossEntropy()(logits, smoothed))


@pytest.mark.parametrize("options, message", [
    ({"mixup": 0.8, "task": "regression"}, "task classification, not regression"),
    ({"mixup": 0.8, "batch_size": 5}, "must be even"),
    ({"cutmix": -1.0}, ">= 0"),
    ({"mixup": 0.8, "mixup_prob": 2.0}, r"in \[0, 1\]"),
])
def test_recipe_checks(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)


def test_modalities_that_cannot_mix_are_refused():
    with pytest.raises(ValueError, match="point_cloud batches cannot be mixed"):
        batch_mixers(TrainConfig(mixup=0.8), 3, ["point_cloud"])
    with pytest.raises(ValueError, match="audio batches take mixup only"):
        batch_mixers(TrainConfig(cutmix=1.0), 3, ["image", "audio"])
    assert set(batch_mixers(TrainConfig(mixup=0.8, cutmix=1.0), 3, ["image", "audio"])) == {"image", "audio"}
    assert batch_mixers(TrainConfig(), 3, ["point_cloud"]) == {}


def test_one_epoch_with_augmentation_and_mixup_trains(tmp_path):
    records = records_from_tensors(torch.rand(18, 3, 20, 20), ["a", "b"] * 9, modality="image")
    options = {**TINY, "epochs": 1, "augment": True, "mixup": 0.8, "cutmix": 1.0, "label_smoothing": 0.1}
    result = train({**options, "run_dir": str(tmp_path / "a")}, records=records)
    assert result.info["global_step"] == 3  # 14 training samples: 3 whole batches of 4 (2 left out)
    assert np.isfinite(result.metrics["train/loss"]) and {"val/acc", "val/loss"} <= set(result.metrics)
    probe = train({**options, "linear_probe": True, "run_dir": str(tmp_path / "b")}, records=records)
    assert probe.info["linear_probe"] is None  # no feature cache when batches are mixed
