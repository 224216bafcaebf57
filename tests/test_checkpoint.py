"""Checkpoints (adamkern.checkpoint) against bad input: whatever a state dict or a file holds,
load either restores it whole or raises ValueError and leaves the optimizer as it was.

1. load_state_dict validates everything before it changes anything: the step count (a
   non-negative integer), the structure, and the hyperparameters and group state, whose
   ranges are the op's own (the op checks a call of zero-size stand-ins); a failed load
   leaves param_groups, state, group_state and step_count as they were, and training goes on
   bit for bit like a twin that never saw it.
2. Hostile files (a deflated entry far larger than its file, a meta declaring 10**9 params,
   a header declaring 2**34 elements over 16 bytes) are refused before their data is read:
   ValueError, fast, with little memory.
3. Damaged files (truncated, random bytes, missing or malformed meta, bad CRC, unknown
   compression, any flipped or cut byte) raise ValueError with the parser's error as its
   cause; a path that cannot be opened raises open()'s own OSError.
4. Only canonical entry names load (no negative, signed or zero-padded index, no unknown
   buffer or suffix).
5. save: temp files of killed saves are removed by the next save of the same target (only
   those whose writer is gone), the directory is fsynced after the rename, the file's mode
   follows the umask.
6. NumPy scalar hyperparameters (and callables inside betas) save and resume bit for bit;
   files in the format of the previous writer still load.
7. save(path, params=True) stores the params: train, save, perturb params and state, load,
   train on is bit for bit the uninterrupted run; load(params=False) leaves them; a params
   entry or array that does not fit is refused before anything changes.
8. A stateful callable (ReduceLROnPlateau) as lr or in betas has its state saved and
   restored into the optimizer's own callable (of the same kind, else ValueError); the lr
   sequence goes on as if never interrupted; a refused load puts the callables back.
9. max_grad_norm and max_grad_value are restored, checked as the constructor checks them.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from adamkern import lowp, optim
from adamkern import schedules as S

SHAPES = [[(5,), (2, 3)], [(300,), (1,)]]  # 300: two blocks of the 8-bit state
COUNT = sum(len(group) for group in SHAPES)


# ---------------------------------------------------------------------------------------------
# Helpers.


def make(kind="Adam", seed=0, steps=3, state_dtype="float32", master_weights=False,
         **hyperparameters):
    """An optimizer over two groups (the second with its own lr), stepped ``steps`` times;
    returns it, its params and the generator of its grads."""
    dtype = lowp.bfloat16() if master_weights else np.float32
    rng = np.random.default_rng(seed)
    groups = [[rng.standard_normal(s).astype(np.float32).astype(dtype) for s in shapes]
              for shapes in SHAPES]
    opt = getattr(optim, kind)([{"params": groups[0]}, {"params": groups[1], "lr": 3e-3}],
                               state_dtype=state_dtype, master_weights=master_weights,
                               **hyperparameters)
    params = opt.params
    for _ in range(steps):
        opt.step(grads_of(rng, params))
    return opt, params, rng


def grads_of(rng, params):
    return [rng.standard_normal(p.shape).astype(np.float32).astype(p.dtype) for p in params]


def freeze(value):
    """A comparable snapshot of anything an optimizer holds: arrays by their bytes,
    callables by identity."""
    if isinstance(value, lowp.Blockwise8):
        return ("blockwise8", value.signed, freeze(value.codes), freeze(value.absmax))
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, dict):
        return ("dict", tuple((repr(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(freeze(v) for v in value))
    if callable(value):
        return ("callable", id(value))
    return ("value", type(value).__name__, repr(value))


def snapshot(opt):
    return {"params": freeze(opt.params),
            "param_groups": freeze([{k: v for k, v in g.items() if k != "params"}
                                    for g in opt.param_groups]),
            "state": freeze(opt.state), "group_state": freeze(opt.group_state),
            "step_count": freeze(opt.step_count),
            "clipping": freeze((opt.max_grad_norm, opt.max_grad_value))}


def assert_unchanged(opt, before, what=""):
    after = snapshot(opt)
    for key in before:
        assert after[key] == before[key], f"{what}: {key} changed"


def assert_same_training(opt, twin, rng_seed=99, steps=2, what=""):
    """Both step on the same grads and hold the same bits (params, state, group state, step
    count) after every step."""
    rng = np.random.default_rng(rng_seed)
    for t in range(steps):
        grads = grads_of(rng, opt.params)
        opt.step([g.copy() for g in grads])
        twin.step([g.copy() for g in grads])
        mine, theirs = snapshot(opt), snapshot(twin)
        for key in ("params", "state", "group_state", "step_count"):
            assert mine[key] == theirs[key], f"{what}: {key} after step {t} differ from the twin"


def refused(opt, load, *args, what=""):
    """``load(*args)`` raises ValueError and ``opt`` is untouched; returns the error."""
    before = snapshot(opt)
    with pytest.raises(ValueError) as info:
        load(*args)
    assert_unchanged(opt, before, what)
    return info.value


def entries_of(path):
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def write_zip(path, entries, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def npy(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array))
    return buffer.getvalue()


def npy_header(shape, dtype):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                 "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def meta_of(path):
    with np.load(path) as data:
        return json.loads(str(data["__meta__"]))


def with_meta(path, meta, out):
    entries = entries_of(path)
    entries["__meta__.npy"] = npy(np.array(json.dumps(meta)))
    return write_zip(out, entries)


@pytest.fixture
def saved(tmp_path):
    """A checkpoint of an Adam (amsgrad) after 3 steps, and a twin of that Adam stepped 2
    steps more (the optimizer every bad load is tried on)."""
    source, _, _ = make(amsgrad=True)
    path = tmp_path / "adam.npz"
    source.save(path)
    target, _, _ = make(seed=1, steps=5, amsgrad=True)
    twin, _, _ = make(seed=1, steps=5, amsgrad=True)
    return path, target, twin


# ---------------------------------------------------------------------------------------------
# 1. load_state_dict: everything validated before anything changes.


def other_state_dict(kind="Adam", **hyperparameters):
    """A state dict of another run (other state, other lr): a half load would show."""
    source, _, _ = make(kind, seed=7, steps=4, **hyperparameters)
    sd = source.state_dict()
    sd["param_groups"][0]["lr"] = 0.5
    return sd


@pytest.mark.parametrize("step_count", [None, math.inf, math.nan, -1, 2.5, 3.0, True, "3", [3],
                                        np.float64(3), np.bool_(True)], ids=repr)
def test_a_bad_step_count_loads_nothing(step_count):
    opt, _, _ = make()
    twin, _, _ = make()
    sd = other_state_dict()
    sd["step_count"] = step_count
    error = refused(opt, opt.load_state_dict, sd, what=f"step_count={step_count!r}")
    assert "step_count" in str(error)
    assert_same_training(opt, twin, what=f"after step_count={step_count!r}")


@pytest.mark.parametrize("step_count", [np.int64(4), np.uint32(4), 4])
def test_integer_step_counts_load_as_int(step_count):
    opt, _, _ = make()
    sd = other_state_dict()
    sd["step_count"] = step_count
    opt.load_state_dict(sd)
    assert opt.step_count == 4 and type(opt.step_count) is int
    assert opt.param_groups[0]["lr"] == 0.5


REFUSED_HYPERPARAMETERS = [
    ("Adam", "lr", -5), ("Adam", "lr", math.inf), ("Adam", "lr", None), ("Adam", "lr", "1e-3"),
    ("Adam", "betas", [2, "x"]), ("Adam", "betas", [1.5, 0.9]), ("Adam", "betas", [0.9]),
    ("Adam", "betas", 0.9), ("Adam", "eps", "nope"), ("Adam", "eps", 0.0),
    ("Adam", "weight_decay", math.nan), ("Adam", "amsgrad", "yes"), ("Adam", "lr", [1e-3]),
    ("Adam", "lr", {"value": 1e-3}), ("Adam", "colour", 1), ("SGD", "momentum", -1.0),
    ("SGD", "dampening", "x"), ("RMSprop", "alpha", 2.0), ("Adan", "betas", [0.9, 0.9]),
    ("NAdam", "momentum_decay", -1.0), ("Adagrad", "lr_decay", -1.0),
    ("Adagrad", "initial_accumulator_value", -1.0), ("Yogi", "initial_accumulator_value", "x"),
]


@pytest.mark.parametrize("kind, key, value", REFUSED_HYPERPARAMETERS,
                         ids=[f"{k}-{key}={v!r}" for k, key, v in REFUSED_HYPERPARAMETERS])
def test_a_refused_hyperparameter_loads_nothing(kind, key, value):
    opt, _, _ = make(kind)
    twin, _, _ = make(kind)
    sd = other_state_dict(kind)
    sd["param_groups"][1][key] = value
    refused(opt, opt.load_state_dict, sd, what=f"{key}={value!r}")
    assert_same_training(opt, twin, what=f"after {key}={value!r}")


def test_the_op_refusal_is_the_cause():
    """The range rules are the op's: its own error is chained, its message kept."""
    opt, _, _ = make()
    sd = other_state_dict()
    sd["param_groups"][1]["lr"] = -5
    error = refused(opt, opt.load_state_dict, sd)
    assert isinstance(error.__cause__, ValueError) and "lr" in str(error.__cause__)
    assert str(error.__cause__) in str(error)


@pytest.mark.parametrize("mu_product", ["hello", np.full(1, -0.5, np.float32), np.full(1, 2.0),
                                        np.ones(2, np.float32), np.ones(1, np.int32),
                                        [math.nan], None],
                         ids=["str", "negative", "two", "two-values", "int32", "nan", "None"])
def test_a_refused_mu_product_loads_nothing(mu_product):
    opt, _, _ = make("NAdam")
    twin, _, _ = make("NAdam")
    sd = other_state_dict("NAdam")
    sd["group_state"][1]["mu_product"] = mu_product
    refused(opt, opt.load_state_dict, sd, what=f"mu_product={mu_product!r}")
    assert_same_training(opt, twin, what="after a bad mu_product")


@pytest.mark.parametrize("kind", ["NAdam", "Adam"])
def test_unknown_group_state_is_refused(kind):
    opt, _, _ = make(kind)
    sd = other_state_dict(kind)
    sd["group_state"][0]["mu_producto" if kind == "NAdam" else "mu_product"] = np.ones(1)
    error = refused(opt, opt.load_state_dict, sd)
    assert "group_state[0]" in str(error)


def malformed_state_dicts():
    """name -> a change that makes the state dict malformed."""
    return {
        "not a dict": lambda sd: list(sd.items()),
        "no optimizer": lambda sd: {k: v for k, v in sd.items() if k != "optimizer"},
        "param_groups a dict": lambda sd: {**sd, "param_groups": {0: sd["param_groups"][0]}},
        "no param_groups": lambda sd: {k: v for k, v in sd.items() if k != "param_groups"},
        "a group a list": lambda sd: {**sd, "param_groups": [[], sd["param_groups"][1]]},
        "num_params a str": lambda sd: {**sd, "param_groups": [
            {**sd["param_groups"][0], "num_params": "2"}, sd["param_groups"][1]]},
        "num_params True": lambda sd: {**sd, "param_groups": [
            sd["param_groups"][0], {**sd["param_groups"][1], "num_params": True}]},
        "num_params 2.0": lambda sd: {**sd, "param_groups": [
            {**sd["param_groups"][0], "num_params": 2.0}, sd["param_groups"][1]]},
        "one group more": lambda sd: {**sd, "param_groups": sd["param_groups"] * 2},
        "no state": lambda sd: {k: v for k, v in sd.items() if k != "state"},
        "state a dict": lambda sd: {**sd, "state": dict(enumerate(sd["state"]))},
        "a state entry a list": lambda sd: {**sd, "state": [[]] + sd["state"][1:]},
        "an unknown buffer": lambda sd: {**sd, "state": sd["state"][:-1] + [
            {**sd["state"][-1], "exp_avg_cube": sd["state"][-1]["exp_avg"]}]},
        "a buffer of another shape": lambda sd: {**sd, "state": sd["state"][:-1] + [
            {**sd["state"][-1], "exp_avg": np.zeros(2, np.float32)}]},
        "a buffer None": lambda sd: {**sd, "state": [{"exp_avg": None}] + sd["state"][1:]},
        "group_state short": lambda sd: {**sd, "group_state": sd["group_state"][:1]},
        "group_state entry a list": lambda sd: {**sd, "group_state": [[], {}]},
        "state_dtype": lambda sd: {**sd, "state_dtype": "int8"},
    }


@pytest.mark.parametrize("case", list(malformed_state_dicts()))
def test_a_malformed_state_dict_loads_nothing(case):
    opt, _, _ = make()
    twin, _, _ = make()
    sd = malformed_state_dicts()[case](other_state_dict())
    refused(opt, opt.load_state_dict, sd, what=case)
    assert_same_training(opt, twin, what=f"after {case}")


def test_a_good_state_dict_after_a_bad_one_loads():
    opt, _, _ = make()
    sd = other_state_dict()
    bad = copy.copy(sd)
    bad["step_count"] = None
    refused(opt, opt.load_state_dict, bad)
    opt.load_state_dict(sd)
    assert opt.step_count == 4 and opt.param_groups[0]["lr"] == 0.5


# ---------------------------------------------------------------------------------------------
# 2. Hostile files: refused before their data is read.


BOMB_BYTES = 64 << 20


def write_with_bomb(path, entries, name, header):
    """``entries`` (deflated) plus entry ``name``: ``header`` and BOMB_BYTES of zeros, which
    deflate to about 64 KiB."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for other, data in entries.items():
            if other != name:
                archive.writestr(other, data)
        with archive.open(name, "w", force_zip64=True) as member:
            member.write(header)
            chunk = bytes(1 << 20)
            for _ in range(BOMB_BYTES >> 20):
                member.write(chunk)
    return path


def assert_refused_cheaply(opt, path, what, seconds=2.0, peak_bytes=8 << 20):
    before = snapshot(opt)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError):
            opt.load(path)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_unchanged(opt, before, what)
    assert elapsed < seconds, f"{what}: refused after {elapsed:.2f} s"
    assert peak < peak_bytes, f"{what}: {peak / 2**20:.1f} MiB allocated to refuse it"


@pytest.mark.parametrize("case", ["declared large", "trailing data", "unknown entry", "meta"])
def test_a_deflate_bomb_is_refused_before_it_is_inflated(saved, tmp_path, case):
    path, opt, twin = saved
    entries = entries_of(path)
    name, header = {
        "declared large": ("state/0/exp_avg.npy", npy_header((BOMB_BYTES // 4,), np.float32)),
        "trailing data": ("state/0/exp_avg.npy", npy(np.zeros(5, np.float32))),
        "unknown entry": ("junk.npy", npy_header((BOMB_BYTES,), np.uint8)),
        "meta": ("__meta__.npy", npy_header((), f"<U{BOMB_BYTES // 4}")),
    }[case]
    bomb = write_with_bomb(tmp_path / "bomb.npz", entries, name, header)
    assert bomb.stat().st_size < BOMB_BYTES // 100
    assert_refused_cheaply(opt, bomb, case)
    assert_same_training(opt, twin, what=f"after a bomb ({case})")


def test_a_meta_declaring_a_billion_params_is_refused_at_once(saved, tmp_path):
    path, opt, _ = saved
    meta = meta_of(path)
    meta["param_groups"][0]["num_params"] = 10**9
    assert_refused_cheaply(opt, with_meta(path, meta, tmp_path / "billion.npz"), "10**9")
    meta["param_groups"] = meta["param_groups"] * 100_000
    assert_refused_cheaply(opt, with_meta(path, meta, tmp_path / "groups.npz"), "groups")


@pytest.mark.parametrize("name", ["state/0/exp_avg.npy", "group_state/0/mu_product.npy",
                                  "__meta__.npy"])
def test_a_header_declaring_2_to_the_34_elements_is_refused(saved, tmp_path, name):
    path, opt, _ = saved
    entries = entries_of(path)
    entries[name] = npy_header((2**34,), np.uint8 if "meta" not in name else "<U1") + bytes(16)
    assert_refused_cheaply(opt, write_zip(tmp_path / "huge.npz", entries), name)


def test_entries_bigger_than_their_header_says_are_refused(saved, tmp_path):
    path, opt, _ = saved
    entries = entries_of(path)
    entries["state/0/exp_avg.npy"] += bytes(4)
    refused(opt, opt.load, write_zip(tmp_path / "longer.npz", entries))


# ---------------------------------------------------------------------------------------------
# 3. Damaged files: ValueError, the parser's error as the cause.


def damaged(path, tmp_path):
    """name -> the bytes of a damaged copy of the checkpoint at ``path``."""
    data = path.read_bytes()
    entries = entries_of(path)
    meta = meta_of(path)
    crc_damaged = bytearray(data)
    crc_damaged[data.index(b"\x93NUMPY", data.index(b"state/0/exp_avg")) + 130] ^= 0xFF

    def zip_of(**changes):
        out = dict(entries)
        for name, value in changes.items():
            name = name.replace("__", "/").replace("/meta/", "__meta__") + ".npy"
            if value is None:
                del out[name]
            else:
                out[name] = value
        return write_zip(tmp_path / "tmp.npz", out).read_bytes()

    def meta_with(**changes):
        return npy(np.array(json.dumps({**meta, **changes})))

    unknown_method = bytearray(zip_of())
    for offset in (0, unknown_method.rindex(b"PK\x01\x02")):  # a local and a central header
        start = unknown_method.index(b"PK", offset)
        method_at = start + (8 if unknown_method[start + 2] == 3 else 10)
        unknown_method[method_at:method_at + 2] = (99).to_bytes(2, "little")
    return {
        "empty": b"",
        "random bytes": np.random.default_rng(0).bytes(len(data)),
        "cut to 10%": data[:len(data) // 10],
        "cut in half": data[:len(data) // 2],
        "cut by one byte": data[:-1],
        "central directory cut": data[:data.rindex(b"PK\x05\x06") + 10],
        "a bad CRC": bytes(crc_damaged),
        "an unknown compression method": bytes(unknown_method),
        "no meta": zip_of(__meta__=None),
        "meta not JSON": zip_of(__meta__=npy(np.array("{'optimizer': 'Adam'"))),
        "meta a list": zip_of(__meta__=npy(np.array("[1, 2]"))),
        "meta a float array": zip_of(__meta__=npy(np.ones(3))),
        "meta not npy": zip_of(__meta__=b"{}"),
        "meta empty": zip_of(__meta__=b""),
        "param_groups a dict": zip_of(__meta__=meta_with(param_groups={"0": {}})),
        "num_params a str": zip_of(__meta__=meta_with(param_groups=[
            {**g, "num_params": str(g["num_params"])} for g in meta["param_groups"]])),
        "step_count a str": zip_of(__meta__=meta_with(step_count="3")),
        "step_count a float": zip_of(__meta__=meta_with(step_count=3.0)),
        "step_count Infinity": zip_of(__meta__=meta_with(step_count=math.inf)),
        "lr negative": zip_of(__meta__=meta_with(param_groups=[
            {**g, "lr": -1.0} for g in meta["param_groups"]])),
        "optimizer None": zip_of(__meta__=meta_with(optimizer=None)),
        "deep JSON": zip_of(__meta__=npy(np.array("[" * 100_000 + "]" * 100_000))),
        "an entry not npy": zip_of(state__0__exp_avg=b"not an array at all"),
        "an entry truncated": zip_of(state__0__exp_avg=npy(np.ones(5, np.float32))[:-3]),
        "an entry of another dtype": zip_of(state__0__exp_avg=npy(np.ones(5))),
        "an entry of another shape": zip_of(state__0__exp_avg=npy(np.ones((5, 1), np.float32))),
        "an entry npy 3.0": zip_of(state__0__exp_avg=b"\x93NUMPY\x03\x00" + bytes(40)),
        "an entry pickled": zip_of(state__0__exp_avg=npy(np.array([None, 1], dtype=object))),
        "a negative dimension": zip_of(group_state__0__mu_product=(
            npy_header((-1,), np.float32))),
    }


def test_damaged_files_raise_value_error(saved, tmp_path):
    path, opt, twin = saved
    for case, data in damaged(path, tmp_path).items():
        bad = tmp_path / "damaged.npz"
        bad.write_bytes(data)
        refused(opt, opt.load, bad, what=case)
    assert_same_training(opt, twin, what="after the damaged files")


@pytest.mark.parametrize("case", ["random bytes", "a bad CRC", "an unknown compression method",
                                  "deep JSON", "meta not JSON", "an entry not npy"])
def test_the_parser_error_is_the_cause(saved, tmp_path, case):
    path, opt, _ = saved
    bad = tmp_path / "damaged.npz"
    bad.write_bytes(damaged(path, tmp_path)[case])
    error = refused(opt, opt.load, bad, what=case)
    assert error.__cause__ is not None, f"{case}: nothing chained"


def test_paths_that_cannot_be_opened_raise_the_os_error(saved, tmp_path):
    """Not a ValueError: the path is wrong, not a checkpoint (documented in load)."""
    _, opt, _ = saved
    before = snapshot(opt)
    with pytest.raises(FileNotFoundError):
        opt.load(tmp_path / "missing.npz")
    with pytest.raises(IsADirectoryError if os.name != "nt" else PermissionError):
        opt.load(tmp_path)
    assert_unchanged(opt, before)


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """A NAdam with 8-bit state and its params (every kind of entry), its file and that file
    loaded."""
    source, _, _ = make("NAdam", steps=2, state_dtype="int8")
    path = tmp_path_factory.mktemp("fuzz") / "nadam.npz"
    source.save(path, params=True)
    loaded, _, _ = make("NAdam", seed=3, steps=1, state_dtype="int8")
    loaded.load(path)
    return path.read_bytes(), snapshot(loaded)


@hypothesis.settings(max_examples=300, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
                                           st.integers(1, 255)), max_size=3),
                  keep=st.floats(0, 1))
def test_a_corrupted_checkpoint_loads_whole_or_not_at_all(small_checkpoint, tmp_path, flips,
                                                          keep):
    data, intact = small_checkpoint
    corrupted = bytearray(data)
    for where, mask in flips:
        corrupted[int(where * len(data))] ^= mask
    if keep < 0.2:  # a fifth of the cases also cut the file
        corrupted = corrupted[:int(keep * 5 * len(corrupted))]
    path = tmp_path / "corrupted.npz"
    path.write_bytes(bytes(corrupted))
    opt, _, _ = make("NAdam", seed=3, steps=1, state_dtype="int8")
    before = snapshot(opt)
    try:
        opt.load(path)
    except ValueError:
        assert_unchanged(opt, before, "a refused file")
    else:  # the damage was in bytes the format does not use (times, padding)
        assert snapshot(opt) == intact


# ---------------------------------------------------------------------------------------------
# 4. Canonical entry names only.


@pytest.mark.parametrize("name", [
    "state/-1/exp_avg", "state/+3/exp_avg", "state/03/exp_avg", "state/3.0/exp_avg",
    "state/ 3/exp_avg", "state/\u0663/exp_avg", "state//exp_avg", "state/3/exp_avg.bogus",
    "state/3/exp_avg.codes", "state/3/exp_avg_cube", "state/3/", "state/4/exp_avg",
    "state/3/exp_avg/x", "group_state/0/mu_product.codes", "group_state/2/mu_product",
    "group_state/-1/mu_product", "State/3/exp_avg", "junk", "__meta__x", "params/-1",
    "params/03", "params/3.0", "params/3/x", "params/3.codes", "params/3.bfloat16",
    "params/4", "params/3/exp_avg", "Params/3", "params"])
@pytest.mark.parametrize("suffix", [".npy", ""])
def test_only_canonical_entry_names_load(saved, tmp_path, name, suffix):
    """The entry holds what state/3/exp_avg would (the last param's, zeros): under another
    name it must not land anywhere. The meta counts it (else the count alone refuses it)."""
    path, opt, twin = saved
    entries = entries_of(path)
    entries[name + suffix] = npy(np.zeros(SHAPES[1][1], np.float32))
    meta = meta_of(path)
    meta["num_entries"] += 1
    entries["__meta__.npy"] = npy(np.array(json.dumps(meta)))
    refused(opt, opt.load, write_zip(tmp_path / "renamed.npz", entries), what=name)
    assert_same_training(opt, twin, what=f"after {name}")


def test_an_entry_twice_is_refused(saved, tmp_path):
    path, opt, _ = saved
    bad = tmp_path / "twice.npz"
    with zipfile.ZipFile(bad, "w") as archive:
        for name, data in entries_of(path).items():
            archive.writestr(name, data)
        zeros = npy(np.zeros(SHAPES[1][1], np.float32))
        with pytest.warns(UserWarning, match="Duplicate"):
            archive.writestr("state/3/exp_avg.npy", zeros)
    refused(opt, opt.load, bad)


def test_a_part_without_its_other_part_is_refused(tmp_path):
    source, _, _ = make(state_dtype="int8")
    path = tmp_path / "int8.npz"
    source.save(path)
    entries = entries_of(path)
    del entries["state/2/exp_avg.absmax.npy"]
    opt, _, _ = make(seed=1, state_dtype="int8")
    refused(opt, opt.load, write_zip(tmp_path / "half.npz", entries))


# ---------------------------------------------------------------------------------------------
# 5. save: stale temp files, the directory's fsync, the file's mode.


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def temp_name(pid, target, token="0123abcd"):
    return f".adamkern-{pid}-{token}.{target}.tmp"


@pytest.mark.skipif(os.name == "nt", reason="no way to probe a pid without killing it")
def test_stale_temp_files_of_the_same_target_are_removed(tmp_path):
    opt, _, _ = make()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = dead_pid()
        stale = [temp_name(dead, "ckpt.npz"), temp_name(dead, "ckpt.npz", "ffff0000"),
                 temp_name(2**40, "ckpt.npz")]
        kept = [temp_name(dead, "other.npz"),  # another target
                temp_name(live.pid, "ckpt.npz"),  # a save running in another process
                temp_name(os.getpid(), "ckpt.npz"),  # one running in this one
                ".adamkern-k2j4h5g6.npz.tmp",  # another writer's pattern
                "ckpt.npz.tmp", f"{temp_name(dead, 'ckpt.npz')}.keep"]
        for name in stale + kept:
            (tmp_path / name).write_bytes(b"partial checkpoint")
        opt.save(tmp_path / "ckpt.npz")
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted(kept + ["ckpt.npz"])
    finally:
        live.kill()
        live.wait()


KILLED_SAVE = """
import os, signal, sys
import numpy as np
import adamkern.optim

opt = adamkern.optim.AdamW([np.ones(1000, np.float32)])
opt.step([np.ones(1000, np.float32)])
os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # killed before the rename
opt.save(sys.argv[1])
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_save_leaves_nothing_after_the_next_save(tmp_path):
    target = tmp_path / "ckpt.npz"
    for _ in range(3):
        process = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_SAVE),
                                  str(target)], capture_output=True, check=False)
        assert process.returncode == -signal.SIGKILL, process.stderr.decode()
    # each killed save removed the file of the one killed before it: one is left
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].endswith(".ckpt.npz.tmp"), leftovers
    opt = optim.AdamW([np.ones(1000, np.float32)])
    opt.step([np.ones(1000, np.float32)])
    opt.save(target)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]
    resumed = optim.AdamW([np.ones(1000, np.float32)])
    resumed.load(target)
    assert resumed.step_count == 1


def test_the_directory_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    opt, _, _ = make()
    events = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        info = os.fstat(fd)
        events.append(("fsync", stat.S_ISDIR(info.st_mode), info.st_ino))
        return fsync(fd)

    def recording_replace(source, target):
        events.append(("replace", os.path.basename(target)))
        return replace(source, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    opt.save(tmp_path / "ckpt.npz")
    monkeypatch.undo()
    assert events[0][:2] == ("fsync", False), "the file is fsynced before the rename"
    assert events[1] == ("replace", "ckpt.npz")
    if os.name != "nt":  # where directories can be opened
        assert events[2:] == [("fsync", True, os.stat(tmp_path).st_ino)]


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o027])
def test_the_saved_file_gets_the_mode_of_a_new_file(tmp_path, umask):
    opt, _, _ = make()
    previous = os.umask(umask)
    try:
        opt.save(tmp_path / "ckpt.npz")
        (tmp_path / "plain").write_bytes(b"")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "ckpt.npz").stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_saves_of_long_names_fit_the_name_limit(tmp_path):
    opt, _, _ = make()
    path = tmp_path / ("c" * 240 + ".npz")
    opt.save(path)
    opt.save(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


# ---------------------------------------------------------------------------------------------
# 6. NumPy scalars, callables in betas, files of the previous writer.


NUMPY_HYPERPARAMETERS = {
    "Adam": {"lr": np.float32(1e-3), "betas": (np.float64(0.8), np.float32(0.99)),
             "eps": np.float32(1e-7), "weight_decay": np.int64(0), "amsgrad": np.bool_(True),
             "maximize": np.bool_(False)},
    "SGD": {"lr": np.float32(0.01), "momentum": np.float16(0.9), "nesterov": np.bool_(True),
            "weight_decay": np.array(1e-4)},
    "NAdam": {"lr": np.float32(2e-3), "momentum_decay": np.float64(4e-3)},
}


@pytest.mark.parametrize("via", ["save", "state_dict"])
@pytest.mark.parametrize("kind", list(NUMPY_HYPERPARAMETERS))
def test_numpy_scalar_hyperparameters_resume_bit_for_bit(kind, via, tmp_path):
    numpy_values = NUMPY_HYPERPARAMETERS[kind]
    straight, _, _ = make(kind, steps=3, **numpy_values)
    first, _, _ = make(kind, steps=3, **numpy_values)
    sd = first.state_dict()
    meta = {k: v for k, v in sd.items() if k not in ("state", "group_state")}
    assert json.loads(json.dumps(meta)) == meta, "hyperparameters are plain Python numbers"
    resumed, _, _ = make(kind, seed=5, steps=1)  # plain defaults, other state
    if via == "save":
        first.save(tmp_path / "ckpt.npz")
        resumed.load(tmp_path / "ckpt.npz")
    else:
        resumed.load_state_dict(sd)
    for key, value in numpy_values.items():  # group 0 has them all (group 1 its own lr)
        assert np.all(np.asarray(resumed.param_groups[0][key], np.float64)
                      == np.asarray(value, np.float64)), key
    for p, q in zip(resumed.params, straight.params):
        p[...] = q
    assert_same_training(resumed, straight, steps=3, what=f"{kind} resumed")


def test_callables_in_betas_are_kept_and_saved(tmp_path):
    beta1 = S.one_cycle(20, 1e-2).momentum  # a schedule of beta1 (0.95 down to 0.85)
    opt, _, _ = make(betas=(beta1, 0.99))
    opt.save(tmp_path / "ckpt.npz")
    resumed, _, _ = make(seed=2, betas=(beta1, 0.99))
    resumed.load(tmp_path / "ckpt.npz")
    for p, q in zip(resumed.params, opt.params):
        p[...] = q
    assert resumed.param_groups[0]["betas"][0] is beta1
    assert_same_training(resumed, opt, what="callable beta1")


def previous_writer(opt, path, old_meta=False):
    """The file the previous version of save wrote (np.savez of the same entries); with
    ``old_meta``, the meta of versions before state_dtype, master weights and group state."""
    sd = opt.state_dict()
    arrays = {}
    for i, entry in enumerate(sd.pop("state")):
        for name, value in entry.items():
            if isinstance(value, lowp.Blockwise8):
                arrays[f"state/{i}/{name}.codes"] = value.codes
                arrays[f"state/{i}/{name}.absmax"] = value.absmax
            elif value.dtype.name == "bfloat16":
                arrays[f"state/{i}/{name}.bfloat16"] = value.view(np.uint16)
            else:
                arrays[f"state/{i}/{name}"] = value
    for g, entry in enumerate(sd.pop("group_state")):
        for name, value in entry.items():
            arrays[f"group_state/{g}/{name}"] = value
    if old_meta:
        for key in ("state_dtype", "master_weights"):
            del sd[key]
    np.savez(path, __meta__=np.array(json.dumps(sd)), **arrays)


@pytest.mark.parametrize("kind, settings", [
    ("Adam", {"amsgrad": True}), ("NAdam", {"state_dtype": "int8"}),
    ("Adan", {"state_dtype": "bfloat16"}), ("SGD", {"master_weights": True, "momentum": 0.9}),
    ("Adam", {"old_meta": True})], ids=["adam", "nadam-int8", "adan-bf16", "sgd-master",
                                         "old-meta"])
def test_files_of_the_previous_writer_load(kind, settings, tmp_path):
    settings = dict(settings)
    old_meta = settings.pop("old_meta", False)
    first, _, _ = make(kind, **settings)
    straight, _, _ = make(kind, **settings)
    previous_writer(first, tmp_path / "old.npz", old_meta)
    resumed, _, _ = make(kind, seed=4, steps=2, **settings)
    resumed.load(tmp_path / "old.npz")
    for p, q in zip(resumed.params, straight.params):
        p[...] = q
    assert snapshot(resumed) == snapshot(straight)
    assert_same_training(resumed, straight, what=f"{kind} from a file of the previous writer")



# ---------------------------------------------------------------------------------------------
# 7. Params in the file: a full resume.


def build(kind="Adam", dtype=np.float32, init=0, **settings):
    """An optimizer of two groups over fresh params of ``dtype`` (values drawn from the seed
    ``init``)."""
    rng = np.random.default_rng(init)
    groups = [[rng.standard_normal(s).astype(np.float32).astype(dtype) for s in shapes]
              for shapes in SHAPES]
    return getattr(optim, kind)([{"params": groups[0]}, {"params": groups[1], "lr": 3e-3}],
                                **settings)


def grad_sequence(params, steps, seed=11, scale=1.0):
    rng = np.random.default_rng(seed)
    return [[(rng.standard_normal(p.shape) * scale).astype(np.float32).astype(p.dtype)
             for p in params] for _ in range(steps)]


def train(opt, grads):
    for step_grads in grads:
        opt.step([g.copy() for g in step_grads])


def perturb(opt, steps=2):
    """Other params and other state: what a resume must overwrite."""
    for p in opt.params:
        p[...] = p.dtype.type(0.25)
    train(opt, grad_sequence(opt.params, steps, seed=123))


FULL_RESUME = [
    ("Adam", np.float32, {}),
    ("AdamW", np.float64, {"amsgrad": True}),
    ("AdamW", "bfloat16", {"master_weights": True, "state_dtype": "int8"}),
    ("NAdam", "bfloat16", {"state_dtype": "bfloat16", "rounding": "stochastic", "seed": 5}),
    ("Adan", np.float16, {}),
    ("SGD", np.float32, {"momentum": 0.9, "nesterov": True}),
]


@pytest.mark.parametrize("kind, dtype, settings", FULL_RESUME,
                         ids=[f"{k}-{np.dtype(d) if d != 'bfloat16' else d}-{'-'.join(s)}"
                              for k, d, s in FULL_RESUME])
@pytest.mark.parametrize("via", ["save", "state_dict"])
def test_a_full_resume_continues_bit_for_bit(kind, dtype, settings, via, tmp_path):
    """N steps, save with params, perturb params and state, load, M steps == N + M steps."""
    dtype = lowp.bfloat16() if dtype == "bfloat16" else dtype
    straight = build(kind, dtype, **settings)
    grads = grad_sequence(straight.params, 5)
    train(straight, grads)
    first = build(kind, dtype, **settings)
    train(first, grads[:3])
    if via == "save":
        first.save(tmp_path / "ckpt.npz", params=True)
    else:
        sd = copy.deepcopy(first.state_dict(params=True))
    train(first, grad_sequence(first.params, 1, seed=77))  # the saved run goes elsewhere
    resumed = build(kind, dtype, init=9, **settings)
    perturb(resumed)
    if via == "save":
        resumed.load(tmp_path / "ckpt.npz")
    else:
        resumed.load_state_dict(sd)
    assert resumed.step_count == 3
    train(resumed, grads[3:])
    assert snapshot(resumed) == snapshot(straight)


def test_params_are_restored_in_place(tmp_path):
    source = build(init=1)
    train(source, grad_sequence(source.params, 2))
    source.save(tmp_path / "ckpt.npz", params=True)
    opt = build(init=2)
    arrays = opt.params
    opt.load(tmp_path / "ckpt.npz")
    assert all(p is q for p, q in zip(opt.params, arrays)), "the optimizer's own arrays"
    assert freeze(arrays) == freeze(source.params)


def test_bfloat16_params_are_stored_as_their_bits(tmp_path):
    opt = build("AdamW", lowp.bfloat16(), master_weights=True)
    train(opt, grad_sequence(opt.params, 1))
    opt.save(tmp_path / "ckpt.npz", params=True)
    with np.load(tmp_path / "ckpt.npz") as data:
        for i, p in enumerate(opt.params):
            assert data[f"params/{i}.bfloat16"].dtype == np.uint16
            assert data[f"params/{i}.bfloat16"].tobytes() == p.view(np.uint16).tobytes()
    assert meta_of(tmp_path / "ckpt.npz")["num_entries"] == len(entries_of(
        tmp_path / "ckpt.npz")) - 1


def test_without_params_nothing_of_them_is_saved_or_restored(tmp_path):
    source = build(init=1)
    train(source, grad_sequence(source.params, 2))
    source.save(tmp_path / "ckpt.npz")
    assert not any(name.startswith("params") for name in entries_of(tmp_path / "ckpt.npz"))
    assert "params" not in source.state_dict()
    opt = build(init=2)
    before = freeze(opt.params)
    opt.load(tmp_path / "ckpt.npz")
    assert freeze(opt.params) == before
    assert freeze(opt.state) == freeze(source.state)


@pytest.mark.parametrize("via", ["save", "state_dict"])
def test_load_params_false_leaves_the_params(tmp_path, via):
    source = build(init=1)
    train(source, grad_sequence(source.params, 2))
    source.save(tmp_path / "ckpt.npz", params=True)
    opt = build(init=2)
    before = freeze(opt.params)
    if via == "save":
        opt.load(tmp_path / "ckpt.npz", params=False)
    else:
        opt.load_state_dict(source.state_dict(params=True), params=False)
    assert freeze(opt.params) == before
    assert freeze(opt.state) == freeze(source.state) and opt.step_count == 2


def test_load_params_false_does_not_read_them(tmp_path):
    """Skipped entries are not read: a damaged params entry stops only a load that wants it."""
    source = build(init=1)
    train(source, grad_sequence(source.params, 2))
    source.save(tmp_path / "ckpt.npz", params=True)
    entries = entries_of(tmp_path / "ckpt.npz")
    entries["params/0.npy"] = b"not an array"
    bad = write_zip(tmp_path / "bad.npz", entries)
    opt = build(init=2)
    refused(opt, opt.load, bad)
    opt.load(bad, params=False)
    assert freeze(opt.state) == freeze(source.state)


@pytest.fixture
def saved_with_params(tmp_path):
    """A checkpoint with params (of another run than the target), and an optimizer and its
    twin to try bad loads on."""
    source = build(init=1)
    train(source, grad_sequence(source.params, 3))
    path = tmp_path / "with_params.npz"
    source.save(path, params=True)
    target, twin = build(init=2), build(init=2)
    for opt in (target, twin):
        train(opt, grad_sequence(opt.params, 2, seed=3))
    return path, target, twin


def rewritten(path, out, changes, meta_changes=None):
    """The file at ``path`` with entries changed (None removes one) and the meta's
    num_entries counting what is left, unless ``meta_changes`` says otherwise."""
    entries = entries_of(path)
    for name, data in changes.items():
        if data is None:
            del entries[name]
        else:
            entries[name] = data
    meta = meta_of(path)
    meta["num_entries"] = len(entries) - 1
    meta.update(meta_changes or {})
    entries["__meta__.npy"] = npy(np.array(json.dumps(meta)))
    return write_zip(out, entries)


def bad_params_files():
    """name -> (entry changes, meta changes) that make the params of a file not fit."""
    return {
        "a param of another dtype": ({"params/0.npy": npy(np.zeros(5))}, None),
        "a param of another shape": ({"params/1.npy": npy(np.zeros((3, 2), np.float32))}, None),
        "a param missing": ({"params/2.npy": None}, None),
        "a param as bfloat16 bits": ({"params/0.npy": None,
                                      "params/0.bfloat16.npy": npy(np.zeros(5, np.uint16))},
                                     None),
        "a param truncated": ({"params/3.npy": npy(np.ones(1, np.float32))[:-2]}, None),
        "a param entry too many": ({"params/4.npy": npy(np.zeros(1, np.float32))}, None),
        "a param entry uncounted": ({"params/2.npy": None}, {"num_entries": 12}),
        "meta counts one entry more": ({}, {"num_entries": 13}),
        "meta count a float": ({}, {"num_entries": 12.0}),
        "a later refusal (lr)": ({}, {"param_groups": [{"num_params": 2, "lr": -1.0},
                                                       {"num_params": 2}]}),
        "a later refusal (clipping)": ({}, {"max_grad_norm": -1.0}),
        "a later refusal (state)": ({"state/3/exp_avg.npy": npy(np.ones(2, np.float32))},
                                    None),
    }


@pytest.mark.parametrize("case", list(bad_params_files()))
def test_a_file_whose_params_do_not_fit_changes_nothing(saved_with_params, tmp_path, case):
    path, opt, twin = saved_with_params
    assert len(entries_of(path)) - 1 == meta_of(path)["num_entries"] == 12  # 4 + 4 * 2
    changes, meta_changes = bad_params_files()[case]
    bad = rewritten(path, tmp_path / "bad.npz", changes, meta_changes)
    refused(opt, opt.load, bad, what=case)
    assert_same_training(opt, twin, what=f"after {case}")


def test_a_meta_holding_params_restores_nothing(saved, tmp_path):
    """Params come from their entries only, never from the JSON."""
    path, opt, _ = saved
    before = freeze(opt.params)
    meta = meta_of(path)
    meta["params"] = [np.zeros(s).tolist() for shapes in SHAPES for s in shapes]
    opt.load(with_meta(path, meta, tmp_path / "meta_params.npz"))
    assert freeze(opt.params) == before


def test_a_lost_entry_is_refused(saved, tmp_path):
    """A zip directory that lost entries (damage no CRC sees) would load without some state:
    the meta's count refuses it."""
    path, opt, twin = saved
    entries = entries_of(path)
    del entries["state/1/exp_avg_sq.npy"]
    error = refused(opt, opt.load, write_zip(tmp_path / "lost.npz", entries))
    assert "entries" in str(error)
    assert_same_training(opt, twin, what="after a lost entry")


def bad_in_memory_params(opt):
    params = opt.params
    return {
        "not a list": {i: p for i, p in enumerate(params)},
        "one fewer": params[:-1],
        "float64 for float32": [p.astype(np.float64) for p in params],
        "a list of floats": [p.tolist() for p in params],
        "another shape": [params[0].reshape(1, 5), *params[1:]],
        "None": [None, *params[1:]],
    }


@pytest.mark.parametrize("case", list(bad_in_memory_params(build())))
def test_a_state_dict_whose_params_do_not_fit_changes_nothing(case):
    source = build(init=1)
    train(source, grad_sequence(source.params, 2))
    sd = source.state_dict(params=True)
    sd["params"] = bad_in_memory_params(source)[case]
    opt, twin = build(init=2), build(init=2)
    refused(opt, opt.load_state_dict, sd, what=case)
    assert_same_training(opt, twin, what=f"after {case}")


def test_a_read_only_param_is_refused_before_anything_changes(saved_with_params):
    path, opt, _ = saved_with_params
    opt.params[2].flags.writeable = False
    error = refused(opt, opt.load, path)
    assert "read-only" in str(error)
    opt.load(path, params=False)  # the rest of the file is fine


def test_params_that_alias_another_param_are_copied_first():
    """A state dict's params may share memory with the target's params (not each its own):
    they are copied before any is written."""
    opt = optim.Adam([np.arange(4, dtype=np.float32), np.arange(4, 8, dtype=np.float32)])
    sd = opt.state_dict(params=True)
    sd["params"] = [opt.params[1], opt.params[0]]  # swapped
    opt.load_state_dict(sd)
    assert opt.params[0].tolist() == [4, 5, 6, 7] and opt.params[1].tolist() == [0, 1, 2, 3]


def test_a_params_bomb_is_refused_before_it_is_inflated(saved_with_params, tmp_path):
    path, opt, twin = saved_with_params
    bomb = write_with_bomb(tmp_path / "bomb.npz", entries_of(path), "params/0.npy",
                           npy_header((BOMB_BYTES // 4,), np.float32))
    assert_refused_cheaply(opt, bomb, "params bomb")
    assert_same_training(opt, twin, what="after a params bomb")


# ---------------------------------------------------------------------------------------------
# 8. Stateful callables: ReduceLROnPlateau resumes where it was.


def plateau(**settings):
    return S.ReduceLROnPlateau(1e-2, patience=1, factor=0.5, **settings)


METRICS = [1.0, 0.9, 0.95, 0.93, 0.92, 0.91, 0.95, 0.5, 0.6, 0.7, 0.8, 0.4, 0.45, 0.5]


def plateau_run(place="lr"):
    """An Adam whose lr (or beta1) is a ReduceLROnPlateau, trained 3 steps per metric."""
    schedule = plateau() if place == "lr" else S.ReduceLROnPlateau(0.9, patience=1)
    settings = {"lr": schedule} if place == "lr" else {"betas": (schedule, 0.999)}
    return build(max_grad_norm=2.0, **settings), schedule


def epochs(opt, schedule, metrics, grads):
    """Per metric: 3 steps, then the metric; returns the lr (the callable's value) seen."""
    values = []
    for k, metric in enumerate(metrics):
        train(opt, grads[3 * k:3 * k + 3])
        values.append(schedule.update(metric))
    return values


@pytest.mark.parametrize("place", ["lr", "beta1"])
@pytest.mark.parametrize("via", ["save", "state_dict"])
def test_a_reduced_plateau_resumes_its_lr_sequence(tmp_path, via, place):
    straight, straight_schedule = plateau_run(place)
    grads = grad_sequence(straight.params, 3 * len(METRICS), scale=3.0)
    expected = epochs(straight, straight_schedule, METRICS, grads)
    first, first_schedule = plateau_run(place)
    epochs(first, first_schedule, METRICS[:6], grads)
    assert first_schedule.lr < first_schedule.state_dict()["init_value"], "it has reduced"
    if via == "save":
        first.save(tmp_path / "ckpt.npz", params=True)
    else:
        sd = copy.deepcopy(first.state_dict(params=True))
    resumed, fresh = plateau_run(place)  # a fresh optimizer with a fresh plateau
    perturb(resumed)
    if via == "save":
        resumed.load(tmp_path / "ckpt.npz")
    else:
        resumed.load_state_dict(sd)
    assert fresh.state_dict() == first_schedule.state_dict()
    assert fresh.lr == expected[5]
    assert epochs(resumed, fresh, METRICS[6:], grads[18:]) == expected[6:]
    mine, theirs = snapshot(resumed), snapshot(straight)
    del mine["param_groups"], theirs["param_groups"]  # callables compare by identity there
    assert mine == theirs


def test_one_plateau_for_every_group_is_loaded_once(tmp_path):
    schedule = plateau()
    opt = optim.Adam([np.ones(3, np.float32), np.ones(2, np.float32)], lr=schedule)
    for metric in (1.0, 1.0, 1.0):
        opt.step([np.ones(3, np.float32), np.ones(2, np.float32)])
        schedule.update(metric)
    opt.save(tmp_path / "ckpt.npz")
    fresh = plateau()
    resumed = optim.Adam([np.ones(3, np.float32), np.ones(2, np.float32)], lr=fresh)
    resumed.load(tmp_path / "ckpt.npz")
    assert fresh.state_dict() == schedule.state_dict()
    assert resumed.param_groups[0]["lr"] is fresh


def plateau_state_dict():
    """The state dict of a run whose plateau has reduced its lr."""
    opt, schedule = plateau_run()
    epochs(opt, schedule, METRICS[:6], grad_sequence(opt.params, 18))
    return opt.state_dict()


def refused_with_the_plateau_kept(opt, schedule, sd, what):
    before = schedule.state_dict()
    error = refused(opt, opt.load_state_dict, sd, what=what)
    assert schedule.state_dict() == before, f"{what}: the plateau changed"
    return error


@pytest.mark.parametrize("other", ["a float", "a schedule", "another plateau", "a function"])
def test_a_plateau_state_needs_a_plateau_of_the_same_kind(other):
    sd = plateau_state_dict()
    lr = {"a float": 1e-2, "a schedule": S.cosine_decay(1e-2, 100),
          "another plateau": plateau(cooldown=3), "a function": lambda step: 1e-2}[other]
    opt = build(lr=lr, max_grad_norm=2.0)
    train(opt, grad_sequence(opt.params, 2))
    before = snapshot(opt)
    if isinstance(lr, S.ReduceLROnPlateau):  # its own load refuses the other configuration
        refused_with_the_plateau_kept(opt, lr, sd, other)
    else:
        error = refused(opt, opt.load_state_dict, sd, what=other)
        assert "ReduceLROnPlateau" in str(error) and "param_groups[0]['lr']" in str(error)
    assert_unchanged(opt, before)


@pytest.mark.parametrize("case", ["state refused by the plateau", "lr refused by the op",
                                  "a later group refused", "a later state refused",
                                  "clipping refused", "two states for one callable"])
def test_a_refused_load_puts_the_plateau_back(case):
    """The plateau takes its state before the op checks the values it gives (its lr): any
    refusal after that gives it back its own."""
    sd = plateau_state_dict()
    saved_state = sd["param_groups"][0]["lr"]["state"]
    if case == "state refused by the plateau":
        saved_state["num_bad_epochs"] = -5
    elif case == "lr refused by the op":
        saved_state["lr"] = -1.0
    elif case == "a later group refused":
        sd["param_groups"][1]["eps"] = -1.0
    elif case == "a later state refused":
        sd["state"][3] = {**sd["state"][3], "exp_avg": np.zeros(3, np.float32)}
    elif case == "clipping refused":
        sd["max_grad_value"] = math.nan
    else:  # group 1 takes group 0's plateau too, with another state
        sd["param_groups"][1]["lr"] = {**sd["param_groups"][0]["lr"],
                                       "state": {**saved_state, "num_bad_epochs": 1}}
    schedule = plateau()
    opt = build(lr=schedule, max_grad_norm=2.0)
    epochs(opt, schedule, [1.0, 2.0], grad_sequence(opt.params, 6, seed=4))
    twin_schedule = plateau()
    twin = build(lr=twin_schedule, max_grad_norm=2.0)
    epochs(twin, twin_schedule, [1.0, 2.0], grad_sequence(twin.params, 6, seed=4))
    error = refused_with_the_plateau_kept(opt, schedule, sd, case)
    if case == "state refused by the plateau":
        assert isinstance(error.__cause__, ValueError) and "num_bad_epochs" in str(error)
    assert_same_training(opt, twin, what=f"after {case}")
    assert schedule.state_dict() == twin_schedule.state_dict()


def test_a_malformed_saved_callable_is_refused():
    sd = plateau_state_dict()
    schedule = plateau()
    opt = build(lr=schedule)
    for broken in ({"callable": "x", "state": {}}, {"type": "x", "state": {}},
                   {"callable": "x", "type": 3, "state": {}},
                   {"callable": "x", "type": "adamkern.schedules.ReduceLROnPlateau",
                    "state": "not a state"},
                   {"callable": "x", "type": "adamkern.schedules.ReduceLROnPlateau",
                    "state": {}, "extra": 1}):
        bad = copy.deepcopy(sd)
        bad["param_groups"][0]["lr"] = broken
        refused_with_the_plateau_kept(opt, schedule, bad, repr(broken))


def test_a_callable_saved_without_state_keeps_the_current_one(saved, tmp_path):
    """Files of versions before callables' states: the optimizer's own callable stays as it
    is."""
    schedule = plateau()
    schedule.update(1.0)
    opt = build(lr=schedule)
    sd = plateau_state_dict()
    sd["param_groups"][0]["lr"] = {"callable": "ReduceLROnPlateau(...)"}
    before = schedule.state_dict()
    opt.load_state_dict(sd)
    assert schedule.state_dict() == before and opt.param_groups[0]["lr"] is schedule


def test_stateless_schedules_are_saved_as_their_repr_only(tmp_path):
    schedule = S.cosine_decay(1e-2, 100)
    opt = build(lr=schedule)
    train(opt, grad_sequence(opt.params, 2))
    opt.save(tmp_path / "ckpt.npz")
    assert meta_of(tmp_path / "ckpt.npz")["param_groups"][0]["lr"] == {"callable": repr(schedule)}
    other = S.cosine_decay(1e-2, 100)
    resumed = build(lr=other)
    resumed.load(tmp_path / "ckpt.npz")
    assert resumed.param_groups[0]["lr"] is other


# ---------------------------------------------------------------------------------------------
# 9. Clipping thresholds: restored, checked as the constructor checks them.


@pytest.mark.parametrize("via", ["save", "state_dict"])
def test_clipping_is_restored(tmp_path, via):
    straight = build(max_grad_norm=0.5, max_grad_value=0.2)
    grads = grad_sequence(straight.params, 5, scale=4.0)
    train(straight, grads)
    first = build(max_grad_norm=0.5, max_grad_value=0.2)
    train(first, grads[:3])
    resumed = build(init=3, max_grad_value=1.0)  # other thresholds
    if via == "save":
        first.save(tmp_path / "ckpt.npz", params=True)
        resumed.load(tmp_path / "ckpt.npz")
    else:
        resumed.load_state_dict(first.state_dict(params=True))
    assert (resumed.max_grad_norm, resumed.max_grad_value) == (0.5, 0.2)
    train(resumed, grads[3:])
    assert snapshot(resumed) == snapshot(straight)
    unclipped = build()
    unclipped.load_state_dict(build(max_grad_norm=1.0).state_dict())
    assert unclipped.max_grad_norm == 1.0
    clipped = build(max_grad_norm=1.0, max_grad_value=1.0)
    clipped.load_state_dict(build().state_dict())
    assert (clipped.max_grad_norm, clipped.max_grad_value) == (None, None)


def test_numpy_clipping_is_restored_as_python_numbers():
    source = build(max_grad_norm=np.float32(0.5), max_grad_value=np.int64(2))
    opt = build()
    opt.load_state_dict(source.state_dict())
    assert opt.max_grad_norm == 0.5 and type(opt.max_grad_norm) is float
    assert opt.max_grad_value == 2 and type(opt.max_grad_value) is int


@pytest.mark.parametrize("key, value", [
    ("max_grad_norm", 0.0), ("max_grad_norm", -1.0), ("max_grad_norm", math.nan),
    ("max_grad_norm", "1"), ("max_grad_norm", True), ("max_grad_norm", [1.0]),
    ("max_grad_norm", {"callable": "f"}), ("max_grad_value", -0.5),
    ("max_grad_value", math.nan), ("max_grad_value", "0")], ids=repr)
@pytest.mark.parametrize("via", ["file", "state_dict"])
def test_a_refused_clipping_loads_nothing(key, value, via, tmp_path):
    source = build(init=1)
    train(source, grad_sequence(source.params, 2))
    opt, twin = build(max_grad_norm=1.0), build(max_grad_norm=1.0)
    if via == "file":
        source.save(tmp_path / "ckpt.npz")
        meta = meta_of(tmp_path / "ckpt.npz")
        meta[key] = value
        error = refused(opt, opt.load, with_meta(tmp_path / "ckpt.npz", meta,
                                                 tmp_path / "bad.npz"))
    else:
        sd = source.state_dict()
        sd[key] = value
        error = refused(opt, opt.load_state_dict, sd)
    assert key in str(error)
    assert_same_training(opt, twin, what=f"after {key}={value!r}")


def test_files_without_clipping_keep_the_current_thresholds(saved, tmp_path):
    path, opt, _ = saved
    opt.max_grad_norm, opt.max_grad_value = 3.0, 0.5
    meta = meta_of(path)
    del meta["max_grad_norm"], meta["max_grad_value"]
    opt.load(with_meta(path, meta, tmp_path / "old.npz"))
    assert (opt.max_grad_norm, opt.max_grad_value) == (3.0, 0.5)
