"""Data sources, label encoding, modality inference and the resumable, DDP-consistent batch sampler."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from metatransformer import create_model
from metatransformer.training.data import (
    ItemDataset,
    LabelEncoder,
    ModalityCollate,
    ResumableBatchSampler,
    assign_splits,
    load_records,
    records_from_tensors,
)

from .conftest import write_images, write_thermal


def test_folder_per_class_with_and_without_split_folders(tmp_path):
    flat = load_records(write_images(tmp_path / "flat", classes=2, per_class=3))
    assert len(flat) == 6 and {r.label for r in flat} == {"c0", "c1"}
    assert {r.modality for r in flat} == {"image"} and all(r.split is None for r in flat)
    split = load_records(write_images(tmp_path / "split", classes=2, per_class=2, splits=True))
    assert sorted({r.split for r in split}) == ["test", "train", "val"] and len(split) == 12


def test_modality_inferred_from_suffix_and_overridden(tmp_path):
    thermal = load_records(write_thermal(tmp_path / "t", classes=2, per_class=2))
    assert {r.modality for r in thermal} == {"infrared"}  # .npy is claimed by infrared
    pngs = load_records(write_images(tmp_path / "x", classes=2, per_class=2), modality="X-ray")
    assert {r.modality for r in pngs} == {"xray"}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_manifests(tmp_path, suffix):
    write_images(tmp_path / "img", classes=2, per_class=2)
    rows = [{"path": f"img/c{c}/{i}.png", "label": f"c{c}", "split": "train" if i else "val",
             "modality": "image" if c else "xray"} for c in range(2) for i in range(2)]
    path = tmp_path / f"m{suffix}"
    if suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    elif suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        pd.DataFrame(rows).to_parquet(path)
    records = load_records(path)
    assert [r.modality for r in records] == ["xray", "xray", "image", "image"]
    assert [r.split for r in records] == ["val", "train", "val", "train"]
    assert all((tmp_path / "img").as_posix() in r.source for r in records)


def test_in_memory_tensors_go_through_the_transform_and_collate():
    model = create_model("nano", modalities={"image": {"img_size": 16, "patch_size": 8}})
    records = records_from_tensors(torch.rand(5, 3, 40, 30), [0, 1, 0, 1, 1], modality="rgb")
    labels = LabelEncoder.fit("classification", [r.label for r in records])
    dataset = ItemDataset(records, model.tokenizer("image"), labels)
    batch, target = ModalityCollate("image")([dataset[i] for i in range(5)])
    assert batch.shape == (5, 3, 16, 16) and target.tolist() == [0, 1, 0, 1, 1]


def test_label_encoders():
    multi = LabelEncoder.fit("multilabel", ["a|b", "b", ["c"]])
    assert multi.classes == ["a", "b", "c"] and multi.encode("a;c").tolist() == [1, 0, 1]
    reg = LabelEncoder.fit("regression", ["1.5", 2])
    assert reg.encode("2.5").item() == 2.5
    cls = LabelEncoder.fit("classification", ["10", "9", "x"])
    assert cls.classes == ["9", "10", "x"]
    with pytest.raises(ValueError, match="not one of the training classes"):
        cls.encode("unseen")


def test_assign_splits_is_seeded_and_stratified(tmp_path):
    records = load_records(write_images(tmp_path, classes=2, per_class=10))
    a = [r.split for r in assign_splits(records, val_fraction=0.2, seed=3)]
    b = [r.split for r in assign_splits(load_records(tmp_path), val_fraction=0.2, seed=3)]
    assert a == b and a.count("val") == 4


def test_ddp_batches_partition_the_single_process_batches():
    one = list(ResumableBatchSampler(16, 4, shuffle=True, seed=5))
    ranks = [list(ResumableBatchSampler(16, 2, shuffle=True, seed=5, rank=r, world_size=2, drop_last=True))
             for r in range(2)]
    for i, batch in enumerate(one):
        assert sorted(batch) == sorted(ranks[0][i] + ranks[1][i])


@pytest.mark.parametrize("size, world, batch", [(5, 2, 2), (7, 3, 2), (8, 2, 3), (4, 4, 1)])
def test_padding_marks_exactly_the_repeats_distributed_sampling_adds(size, world, batch):
    """Over all ranks, the items not marked as padding are every sample exactly once (as in
    torch's DistributedSampler, whose padded tail repeats the first samples)."""
    real = []
    for rank in range(world):
        sampler = ResumableBatchSampler(size, batch, shuffle=True, seed=3, rank=rank, world_size=world)
        for b, indices in enumerate(sampler):
            mask = sampler.padding(b)
            assert mask.shape == (len(indices),)
            real += [i for i, pad in zip(indices, mask.tolist()) if not pad]
    assert sorted(real) == list(range(size))
    reference = torch.utils.data.DistributedSampler(range(size), num_replicas=world, rank=0, shuffle=False)
    assert reference.total_size - size == sum(
        int(ResumableBatchSampler(size, batch, shuffle=False, rank=r, world_size=world).padding(b).sum())
        for r in range(world) for b in range(len(ResumableBatchSampler(size, batch, shuffle=False, rank=r,
                                                                       world_size=world))))


def test_sampler_skips_consumed_batches_once_and_reshuffles_per_epoch():
    sampler = ResumableBatchSampler(10, 3, shuffle=True, seed=0)
    full = list(sampler)
    sampler.skip_batches(2)
    assert list(sampler) == full[2:] and list(sampler) == full
    sampler.set_epoch(1)
    assert list(sampler) != full and len(sampler) == 4


def test_worker_processes_give_the_same_batches(tmp_path):
    from metatransformer.training.data import make_loader

    records = load_records(write_images(tmp_path, classes=2, per_class=3))
    model = create_model("nano", modalities={"image": {"img_size": 16, "patch_size": 8}})
    labels = LabelEncoder.fit("classification", [r.label for r in records])
    dataset = ItemDataset(records, model.tokenizer("image"), labels)
    batches = [list(make_loader(dataset, batch_size=4, shuffle=True, seed=1, num_workers=w)) for w in (0, 2)]
    for (x0, y0), (x1, y1) in zip(*batches):
        torch.testing.assert_close(x0, x1)
        assert torch.equal(y0, y1)


def test_lightning_sets_the_epoch_of_the_batch_sampler():
    from lightning.fabric.utilities.data import _set_sampler_epoch
    from torch.utils.data import DataLoader

    sampler = ResumableBatchSampler(8, 2, shuffle=True)
    _set_sampler_epoch(DataLoader(range(8), batch_sampler=sampler), 3)
    assert sampler.epoch == 3


def test_augmentation_is_the_registered_one_and_only_for_training_items(tmp_path):
    from pathlib import Path

    from metatransformer.embed import item_loader

    records = load_records(write_images(tmp_path, classes=2, per_class=2))
    model = create_model("nano", modalities={"image": {"img_size": 16, "patch_size": 8}})
    labels = LabelEncoder.fit("classification", [r.label for r in records])
    plain = ItemDataset(records, model.tokenizer("image"), labels)
    augmented = ItemDataset(records, model.tokenizer("image"), labels, augment=True,
                            augment_options={"scale": (0.2, 0.5)})
    embedding = item_loader(model, "image")  # what `embed` and evaluation read
    for i, record in enumerate(records):
        assert torch.equal(plain[i][0], embedding(Path(record.source)))
        torch.manual_seed(i)
        item = augmented[i][0]
        assert item.shape == plain[i][0].shape and not torch.equal(item, plain[i][0])
    tensors = records_from_tensors(torch.rand(2, 3, 20, 20), ["c0", "c1"], modality="image")
    in_memory = ItemDataset(tensors, model.tokenizer("image"), labels, augment=True)
    assert not torch.equal(in_memory[0][0], ItemDataset(tensors, model.tokenizer("image"), labels)[0][0])
