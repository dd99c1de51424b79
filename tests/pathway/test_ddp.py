"""A two-process CPU (gloo) DDP training step with the pathway, frozen and trainable auxiliary."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, trainable_aux: bool, result_dir: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    from metatransformer.encoders import create_encoder
    from metatransformer.pathway import pathway_layers, pathway_param_groups, reparameterize_aux_into_target_model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.manual_seed(rank)  # different initial weights per rank: DDP must broadcast rank 0's once
    model = create_encoder("nano")
    reparameterize_aux_into_target_model(model, create_encoder("nano"), trainable_aux=trainable_aux)
    assert list(model.buffers()) == [], "auxiliary weights must be parameters, not buffers"
    ddp = DistributedDataParallel(model, find_unused_parameters=False)
    optimizer = torch.optim.AdamW(pathway_param_groups(model, weight_decay=0.05, aux_weight_decay=0.0), lr=1e-2)
    torch.manual_seed(100 + rank)  # different data per rank
    for _ in range(2):
        loss = ddp(torch.randn(4, 6, 64), torch.rand(4, 6) > 0.2).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    layer = pathway_layers(model)["blocks.0.attn.qkv"]
    torch.save({name: p.detach() for name, p in model.named_parameters()} |
               {"_aux_grad_is_none": torch.tensor(layer.aux_weights[0].grad is None)},
               os.path.join(result_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.parametrize("trainable_aux", [False, True])
def test_ddp_step_keeps_ranks_in_sync(tmp_path, trainable_aux):
    mp.spawn(_worker, args=(2, _free_port(), trainable_aux, str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], msg=f"{name} differs between ranks")
    scales = [v for k, v in rank0.items() if k.endswith("scales.0")]
    assert scales and all(s.abs().item() > 0 for s in scales), "λ must have been trained away from 0"
    assert bool(rank0["_aux_grad_is_none"]) is (not trainable_aux)
