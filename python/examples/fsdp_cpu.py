"""FSDP2 on CPU (gloo) with adamkern.torch.AdamW: each rank steps its shard of every param.

The same sharded model is trained with adamkern.torch.AdamW and with
torch.optim.AdamW(fused=True), on data that differs between the ranks; the losses and the
final weights must be identical (adamkern's AdamW is bitwise torch's fused one, shard by
shard). adamkern's optimizer state is made of DTensors of each param's placement, so
torch.distributed.checkpoint saves it sharded; the example saves it, loads it into a fresh
optimizer, and checks that both continue identically. The exit status is 1 if anything
differs.

    torchrun --nproc-per-node 2 python/examples/fsdp_cpu.py [--steps 20] [--hidden 256]

Without torchrun it runs as one process (a group of one rank).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (get_model_state_dict,
                                                     get_optimizer_state_dict,
                                                     set_model_state_dict,
                                                     set_optimizer_state_dict)
from torch.distributed.fsdp import fully_shard

import adamkern.torch


def make_model(hidden: int, seed: int = 0) -> torch.nn.Module:
    """An MLP, each Linear sharded on its own (FSDP2's fully_shard), then the whole."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.GELU(),
                                torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
                                torch.nn.Linear(hidden, 10))
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    return fully_shard(model)


def batches(rank: int, steps: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each rank its own inputs, labelled by one random linear teacher (the same on every
    rank): a task the model learns."""
    teacher = torch.randn(64, 10, generator=torch.Generator().manual_seed(1234))
    generator = torch.Generator().manual_seed(1000 * seed + rank)
    inputs = [torch.randn(32, 64, generator=generator) for _ in range(steps)]
    return [(x, (x @ teacher).argmax(dim=1)) for x in inputs]


def train(model, opt, data) -> list[float]:
    losses = []
    for x, y in data:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def everywhere(condition: bool) -> bool:
    """Whether ``condition`` holds on every rank."""
    flag = torch.tensor(int(condition))
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag)


def same_params(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two sharded models hold identical weights (each rank compares its shards)."""
    return all(torch.equal(p.to_local(), q.to_local())
               for p, q in zip(a.parameters(), b.parameters()))


def checkpoint_round_trip(model, opt, hidden: int, data, directory: str) -> bool:
    """Saves model and optimizer with torch.distributed.checkpoint (each rank its shards),
    loads them into a fresh model and optimizer, trains both on: identical?"""
    dcp.save({"model": get_model_state_dict(model),
              "optim": get_optimizer_state_dict(model, opt)}, checkpoint_id=directory)
    twin = make_model(hidden, seed=1)
    twin_opt = adamkern.torch.AdamW(twin.parameters(), lr=1e-3)
    state = {"model": get_model_state_dict(twin),
             "optim": get_optimizer_state_dict(twin, twin_opt)}
    dcp.load(state, checkpoint_id=directory)
    set_model_state_dict(twin, state["model"])
    set_optimizer_state_dict(twin, twin_opt, state["optim"])
    return train(model, opt, data) == train(twin, twin_opt, data) and same_params(model, twin)


def init_process_group() -> None:
    """gloo, from torchrun's environment; a group of one rank without it."""
    if "RANK" in os.environ:
        dist.init_process_group("gloo")
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0,
                            world_size=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args(argv)
    init_process_group()
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        data = batches(rank, args.steps)

        ours = make_model(args.hidden)
        opt = adamkern.torch.AdamW(ours.parameters(), lr=1e-3)
        theirs = make_model(args.hidden)
        reference = torch.optim.AdamW(theirs.parameters(), lr=1e-3, fused=True)
        losses, reference_losses = train(ours, opt, data), train(theirs, reference, data)
        identical = everywhere(losses == reference_losses and same_params(ours, theirs))

        weight = next(ours.parameters())
        exp_avg = opt.state[weight]["exp_avg"]
        if rank == 0:
            print(f"{world} ranks, {args.steps} steps: loss {losses[0]:.4f} -> {losses[-1]:.4f} "
                  "(rank 0's batches)")
            print(f"first weight: {type(weight).__name__} {tuple(weight.shape)} "
                  f"{weight.placements}, rank 0's shard {tuple(weight.to_local().shape)}; its "
                  f"exp_avg: {type(exp_avg).__name__} {exp_avg.placements}")
            print(f"losses and the final weights identical to torch.optim.AdamW(fused=True): "
                  f"{identical}")
        with tempfile.TemporaryDirectory(prefix="fsdp_cpu_") as scratch:
            directory = [scratch if rank == 0 else None]
            dist.broadcast_object_list(directory)  # one checkpoint, each rank its shards
            resumed = everywhere(checkpoint_round_trip(ours, opt, args.hidden,
                                                       batches(rank, 5, seed=1), directory[0]))
            dist.barrier()  # every rank is done with rank 0's directory
        if rank == 0:
            print("checkpoint saved with torch.distributed.checkpoint, loaded into a fresh "
                  f"optimizer, trained on identically: {resumed}")
        return 0 if identical and resumed else 1
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
