"""adamkern.torch under torch.distributed: 2 processes on gloo (CPU, 127.0.0.1).

Each wrapper trains the same model 20 steps twice, with adamkern.torch.AdamW and with
torch.optim.AdamW(fused=True) (torch's fused CPU path takes FSDP2's DTensors, ZeRO's shards
and DDP's params), on data that differs between the ranks; the parameters must be bitwise
equal. FSDP2's optimizer state must be DTensors of their params' placements, and a
torch.distributed.checkpoint round trip of it must continue bit for bit, in adamkern's
optimizer and in torch's. The example python/examples/fsdp_cpu.py runs under torchrun.

The ranks are subprocesses running this file as a script (``python test_torch_distributed.py
RANK PORT OUT``), every scenario in one process group; each rank writes what it found to OUT
after each scenario, and a rank that fails writes the traceback and exits at once, so the
other one's collectives fail too instead of waiting. Everything is bounded by timeouts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import adamkern.torch  # noqa: E402 - needs torch

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is not available")

WORLD = 2
STEPS = 20
TIMEOUT_S = 120  # a whole run of the ranks; a collective waits at most COLLECTIVE_S
COLLECTIVE_S = 60
ROOT = Path(__file__).resolve().parents[1]


# -- the ranks ----------------------------------------------------------------------------------


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    # 33 rows: shards of 17 and 16 rows; biases of 33 and 5 elements: uneven shards
    return torch.nn.Sequential(torch.nn.Linear(16, 33), torch.nn.GELU(),
                               torch.nn.Linear(33, 33), torch.nn.GELU(), torch.nn.Linear(33, 5))


PARAMS = 6  # make_model's
OPTIMIZERS = {"adamkern": (adamkern.torch.AdamW, {}),
              "torch": (torch.optim.AdamW, {"fused": True})}


def make_optimizer(name: str, params):
    cls, extra = OPTIMIZERS[name]
    return cls(params, lr=1e-2, **extra)


def batches(rank: int, count: int) -> list:
    generator = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    return [(torch.randn(8, 16, generator=generator), torch.randn(8, 5, generator=generator))
            for _ in range(count)]


def train(model, opt, data) -> None:
    for x, y in data:
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        opt.zero_grad()


def shard(model: torch.nn.Module) -> torch.nn.Module:
    """FSDP2: each Linear its own unit, then the root."""
    from torch.distributed.fsdp import fully_shard

    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    return fully_shard(model)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor as this rank holds it (a DTensor: its shard)."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def snapshot(model: torch.nn.Module) -> list[torch.Tensor]:
    return [local(p).detach().clone() for p in model.parameters()]


def compare(models: list, initial: list[torch.Tensor]) -> dict:
    """Whether the models' parameters (this rank's shards) are bitwise equal, and whether they
    moved from their ``initial`` values (a step that did nothing would be equal too)."""
    first, *others = map(snapshot, models)
    pairs = [(a, b) for other in others for a, b in zip(first, other)]
    return {"equal": all(torch.equal(a, b) for a, b in pairs),
            "max_difference": max((float((a.double() - b.double()).abs().max())
                                   for a, b in pairs if a.numel()), default=0.0),
            "moved": all(not torch.equal(a, b) for a, b in zip(first, initial) if a.numel())}


def run_fsdp2(rank: int, out: Path) -> dict:
    """FSDP2 (DTensor params): both optimizers, 20 steps; where adamkern keeps its state."""
    from torch.distributed.tensor import DTensor

    data = batches(rank, STEPS)
    models, opts = [], []
    for name in OPTIMIZERS:
        model = shard(make_model())
        initial = snapshot(model)
        opts.append(make_optimizer(name, model.parameters()))
        train(model, opts[-1], data)
        models.append(model)
    model, opt = models[0], opts[0]
    placed = []
    for param in model.parameters():
        for key, value in opt.state[param].items():
            placed.append(type(value) is torch.Tensor if key == "step" else (
                isinstance(value, DTensor) and value.placements == param.placements
                and value.device_mesh == param.device_mesh
                and value.to_local().shape == param.to_local().shape))
    return {**compare(models, initial),
            "params_are_dtensors": all(isinstance(p, DTensor) for p in model.parameters()),
            "state_as_params": all(placed) and len(placed) == 3 * PARAMS}


def run_zero(rank: int, out: Path) -> dict:
    """ZeroRedundancyOptimizer over DDP: each rank keeps the state of its partition."""
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    data = batches(rank, STEPS)
    models, opts = [], []
    for cls, extra in OPTIMIZERS.values():
        model = DistributedDataParallel(make_model())
        initial = snapshot(model.module)
        opts.append(ZeroRedundancyOptimizer(model.parameters(), optimizer_class=cls, lr=1e-2,
                                            **extra))
        train(model, opts[-1], data)
        models.append(model.module)
    local_opt = opts[0].optim
    return {**compare(models, initial),
            "local_optimizer": f"{type(local_opt).__module__}.{type(local_opt).__name__}",
            "partitioned": 0 < len(local_opt.state) < PARAMS}


def run_ddp(rank: int, out: Path) -> dict:
    """DistributedDataParallel: the optimizers see all-reduced grads."""
    from torch.nn.parallel import DistributedDataParallel

    data = batches(rank, STEPS)
    models = []
    for name in OPTIMIZERS:
        model = DistributedDataParallel(make_model())
        initial = snapshot(model.module)
        train(model, make_optimizer(name, model.parameters()), data)
        models.append(model.module)
    return compare(models, initial)


def run_checkpoint(rank: int, out: Path) -> dict:
    """FSDP2 with adamkern: 10 steps, torch.distributed.checkpoint save; loaded into a fresh
    model (another init) with a fresh adamkern optimizer (every key) and with torch's fused
    one; the state loaded bitwise as saved; 10 more steps of all three bitwise equal."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import DefaultLoadPlanner
    from torch.distributed.checkpoint.state_dict import (get_model_state_dict,
                                                         get_optimizer_state_dict,
                                                         set_model_state_dict,
                                                         set_optimizer_state_dict)

    data = batches(rank, STEPS)
    model = shard(make_model())
    opt = make_optimizer("adamkern", model.parameters())
    train(model, opt, data[:10])
    initial = snapshot(model)
    saved = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
    dcp.save(saved, checkpoint_id=out / "checkpoint")
    models, opts = [model], [opt]
    for name in OPTIMIZERS:
        twin = shard(make_model(seed=1))
        twin_opt = make_optimizer(name, twin.parameters())
        state = {"model": get_model_state_dict(twin),
                 "optim": get_optimizer_state_dict(twin, twin_opt)}
        # torch's groups hold a key adamkern's lack (decoupled_weight_decay): the load leaves
        # it as the constructor made it
        planner = DefaultLoadPlanner(allow_partial_load=name == "torch")
        dcp.load(state, checkpoint_id=out / "checkpoint", planner=planner)
        set_model_state_dict(twin, state["model"])
        set_optimizer_state_dict(twin, twin_opt, state["optim"])
        models.append(twin)
        opts.append(twin_opt)
    loaded = opts[1]
    same_state = all(
        sorted(opt.state[a]) == sorted(loaded.state[b])
        and all(type(value) is type(loaded.state[b][key])
                and torch.equal(local(value), local(loaded.state[b][key]))
                for key, value in opt.state[a].items())
        for a, b in zip(model.parameters(), models[1].parameters()))
    for twin, twin_opt in zip(models, opts):
        train(twin, twin_opt, data[10:])
    return {**compare(models, initial), "state_loaded_bitwise": same_state}


SCENARIOS = {"fsdp2": run_fsdp2, "zero": run_zero, "ddp": run_ddp, "checkpoint": run_checkpoint}


def rank_main(rank: int, port: int, out: Path) -> None:
    dist = torch.distributed
    torch.set_num_threads(1)
    found: dict = {}
    path = out / f"rank{rank}.json"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD, timeout=timedelta(seconds=COLLECTIVE_S))
    try:
        for name, run in SCENARIOS.items():
            try:
                found[name] = run(rank, out)
            except BaseException:
                found[name] = {"error": traceback.format_exc()}
                path.write_text(json.dumps(found))
                os._exit(1)  # the other rank's collectives fail now, instead of waiting
            path.write_text(json.dumps(found))
            dist.barrier()
    finally:
        dist.destroy_process_group()


# -- the tests ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env() -> dict:
    """The ranks' environment: one thread each (two ranks share the machine)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_ranks(command: list[list[str]], timeout: float) -> list[subprocess.CompletedProcess]:
    """Runs the commands at once; kills every one still running after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=rank_env(), cwd=ROOT) for c in command]
    results = []
    try:
        for proc in procs:
            output, _ = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, output))
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        outputs = [proc.communicate()[0] for proc in procs]
        pytest.fail(f"the ranks ran past {timeout} s:\n" + "\n".join(outputs))
    return results


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each rank found, scenario by scenario (one run of the ranks for every test)."""
    out = tmp_path_factory.mktemp("distributed")
    port = free_port()
    results = run_ranks([[sys.executable, __file__, str(rank), str(port), str(out)]
                         for rank in range(WORLD)], TIMEOUT_S)
    found = []
    for rank, result in enumerate(results):
        path = out / f"rank{rank}.json"
        found.append(json.loads(path.read_text()) if path.exists() else {})
        found[-1]["output"] = result.stdout
    return found


def scenario(ranks, name: str) -> list[dict]:
    """Each rank's findings in scenario ``name``; fails with its error or output if absent."""
    for rank, found in enumerate(ranks):
        if name not in found:
            pytest.fail(f"rank {rank} did not run {name!r}:\n{found['output']}")
        if "error" in found[name]:
            pytest.fail(f"rank {rank}, {name!r}:\n{found[name]['error']}")
    return [found[name] for found in ranks]


def check_bitwise(findings: list[dict]) -> None:
    for rank, found in enumerate(findings):
        assert found["moved"], f"rank {rank}: the parameters did not move"
        assert found["equal"], (f"rank {rank}: adamkern differs from torch fused by up to "
                                f"{found['max_difference']}")


def test_fsdp2_steps_local_shards_bitwise_torch_fused(ranks):
    findings = scenario(ranks, "fsdp2")
    check_bitwise(findings)
    for found in findings:
        assert found["params_are_dtensors"]
        assert found["state_as_params"]  # exp_avg, exp_avg_sq: DTensors of the param's placement


def test_zero_redundancy_optimizer_bitwise_torch_fused(ranks):
    findings = scenario(ranks, "zero")
    check_bitwise(findings)
    for found in findings:
        assert found["local_optimizer"] == "adamkern.torch.AdamW"
        assert found["partitioned"]  # each rank holds the state of some params, not all


def test_ddp_bitwise_torch_fused(ranks):
    check_bitwise(scenario(ranks, "ddp"))


def test_fsdp2_checkpoint_round_trip(ranks):
    findings = scenario(ranks, "checkpoint")
    check_bitwise(findings)  # saved, loaded into adamkern's and into torch's: one trajectory
    for found in findings:
        assert found["state_loaded_bitwise"]


# -- one rank, in this process: storage modes and refusals of DTensor params ---------------------


@pytest.fixture(scope="module")
def mesh():
    """A process group of this process alone, and its 1-D device mesh."""
    from torch.distributed.device_mesh import init_device_mesh

    dist = torch.distributed
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()


def dtensor(tensor: torch.Tensor, mesh, placement=None) -> torch.Tensor:
    from torch.distributed.tensor import DTensor, Shard

    return DTensor.from_local(tensor, mesh, [placement or Shard(0)], run_check=False)


@pytest.mark.parametrize("dtype, mode", [
    (torch.float32, {}),
    (torch.float32, {"state_dtype": "bfloat16"}),
    (torch.bfloat16, {"master_weights": True}),
    (torch.bfloat16, {"rounding": "stochastic", "seed": 3}),
], ids=["torch", "bf16-state", "master", "stochastic"])
def test_dtensor_params_step_as_their_local_tensors(mesh, dtype, mode):
    from torch.distributed.tensor import DTensor

    generator = torch.Generator().manual_seed(0)
    values = torch.randn(37, 5, generator=generator).to(dtype)
    plain = torch.nn.Parameter(values.clone())
    sharded = torch.nn.Parameter(dtensor(values.clone(), mesh))
    opts = [adamkern.torch.AdamW([p], lr=1e-2, **mode) for p in (plain, sharded)]
    for _ in range(5):
        grad = torch.randn(37, 5, generator=generator).to(dtype)
        plain.grad, sharded.grad = grad.clone(), dtensor(grad.clone(), mesh)
        for opt in opts:
            opt.step()
    assert torch.equal(sharded.to_local(), plain)
    state, sharded_state = opts[0].state[plain], opts[1].state[sharded]
    assert sorted(state) == sorted(sharded_state)
    for key, value in sharded_state.items():
        assert isinstance(value, DTensor) == (key != "step"), key
        if isinstance(value, DTensor):
            assert value.placements == sharded.placements
            value = value.to_local()
        assert torch.equal(value, state[key]), key


def test_int8_state_is_refused_for_dtensor_params(mesh):
    sharded = torch.nn.Parameter(dtensor(torch.randn(6, 4), mesh))
    with pytest.raises(ValueError, match=r"param_groups\[0\] param 0 is a DTensor.*int8"):
        adamkern.torch.AdamW([sharded], state_dtype="int8")
    opt = adamkern.torch.AdamW([torch.nn.Parameter(torch.randn(3))], state_dtype="int8")
    with pytest.raises(ValueError, match=r"param_groups\[1\] param 0 is a DTensor"):
        opt.add_param_group({"params": [sharded]})
    assert len(opt.param_groups) == 1


def test_a_grad_holding_a_partial_sum_is_refused(mesh):
    from torch.distributed.tensor import Partial, Replicate

    values = torch.randn(6, 4)
    param = torch.nn.Parameter(dtensor(values.clone(), mesh, Replicate()))
    param.grad = dtensor(torch.randn(6, 4), mesh, Partial())
    opt = adamkern.torch.AdamW([param])
    with pytest.raises(ValueError, match=r"param 0's grad is a DTensor .*Partial"):
        opt.step()
    assert torch.equal(param.to_local(), values) and not opt.state


# -- the example ----------------------------------------------------------------------------------


def test_fsdp_cpu_example_under_torchrun():
    example = ROOT / "python" / "examples" / "fsdp_cpu.py"
    (result,) = run_ranks([[sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                            str(WORLD), "--master-addr", "127.0.0.1", "--master-port",
                            str(free_port()), str(example), "--steps", "5"]], TIMEOUT_S)
    assert result.returncode == 0, result.stdout
    assert "identical to torch.optim.AdamW(fused=True): True" in result.stdout


if __name__ == "__main__":
    rank_main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
