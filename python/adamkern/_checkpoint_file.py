"""The ``.npz`` file of a checkpoint (see :mod:`adamkern.checkpoint` for its entries): written
atomically, and read only as far as it matches what the optimizer's own state would be."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import reprlib
import secrets
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from adamkern._checkpoint_state import (buffer_dtype, check_header, decode, encode, is_count,
                                        known_buffers, malformed, require, restore, state_dict,
                                        storage_parts)

_META = "__meta__"
_NUM_ENTRIES = "num_entries"  # in the meta of a file: how many array entries save wrote
# Entry names (without ".npy"): kind, index, buffer or group-state name (none for params),
# storage suffix (which suffixes a buffer or param has is storage_parts' to say).
_INDEX_AND_NAME = r"(0|[1-9][0-9]*)/([A-Za-z_][A-Za-z0-9_]*)"
_ENTRY_KEYS = {"state": re.compile(rf"state/{_INDEX_AND_NAME}(\.[a-z0-9]+)?"),
               "group_state": re.compile(rf"group_state/{_INDEX_AND_NAME}()"),
               "params": re.compile(r"params/(0|[1-9][0-9]*)()(\.[a-z0-9]+)?")}
# Bounds on what a file may make load read. An entry's data is bounded by what this optimizer
# expects; the .npy header (at most 64 KiB in format 1.0) comes on top.
_NPY_HEADER_BYTES = (1 << 16) + 16
_META_BYTES = 1 << 20  # the JSON as UTF-32: a real one is ~1 KiB per group
_META_BYTES_PER_GROUP = 1 << 16  # generous: a group holds a few numbers and callables' reprs
_GROUP_STATE_BYTES = 1 << 12  # per-group scalars (NAdam's mu_product)
# Temp files of save: ".adamkern-<pid>-<random hex>.<target name, cut>.tmp" (pid and target
# let a later save tell its own stale files from live ones; the cut keeps the name short).
_TEMPORARY = re.compile(r"\.adamkern-([0-9]+)-[0-9a-f]+\.(.*)\.tmp", re.DOTALL)
_TEMPORARY_TARGET_CHARS = 50


# -- save --------------------------------------------------------------------------------------


def save(opt: Any, path: str | os.PathLike, *, params: bool = False) -> None:
    """Writes :func:`state_dict` (with ``params=True``, the params too: what a full resume
    needs) to ``path`` (.npz) atomically: a temp file in the same directory, flushed and
    fsynced, renamed over ``path``, then the directory fsynced, so a crash or power loss
    leaves the previous checkpoint or the new one, whole. The file gets
    the mode any new file gets (0o666 less the umask). The temp file is named
    ``.adamkern-<pid>-<random>.<name of path>.tmp``: a save killed before its rename leaves
    it behind, and the next save of the same path removes those whose process is gone."""
    sd = state_dict(opt, params=params)
    arrays = {f"state/{i}/{name}{suffix}": part
              for i, entry in enumerate(sd.pop("state")) for name, value in entry.items()
              for suffix, part in encode(value).items()}
    arrays.update({f"group_state/{g}/{name}": value
                   for g, entry in enumerate(sd.pop("group_state"))
                   for name, value in entry.items()})
    arrays.update({f"params/{i}{suffix}": part for i, param in enumerate(sd.pop("params", ()))
                   for suffix, part in encode(param).items()})
    sd[_NUM_ENTRIES] = len(arrays)
    meta = json.dumps(sd)  # fails, before any file exists, on a value JSON cannot hold
    directory, target = os.path.split(os.path.abspath(path))
    _remove_stale_temporaries(directory, target)
    descriptor, temporary = _create_temporary(directory, target)
    try:
        with os.fdopen(descriptor, "wb") as file:
            np.savez(file, **{_META: np.array(meta)}, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _create_temporary(directory: str, target: str) -> tuple[int, str]:
    """A new, empty temp file for ``target``, created as ``open(..., "w")`` creates a file
    (mode 0o666 less the umask; mkstemp's 0o600 would stay on the checkpoint after the
    rename)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = (f".adamkern-{os.getpid()}-{secrets.token_hex(4)}."
                f"{target[:_TEMPORARY_TARGET_CHARS]}.tmp")
        temporary = os.path.join(directory, name)
        with contextlib.suppress(FileExistsError):  # that random name is taken: draw again
            return os.open(temporary, flags, 0o666), temporary
    raise FileExistsError(errno.EEXIST, "no free temp file name for a checkpoint", directory)


def _remove_stale_temporaries(directory: str, target: str) -> None:
    """Deletes the temp files that saves of ``target`` killed before their rename left behind
    (each the size of a checkpoint). Only this writer's names for the same target, and only
    where the writing process is gone: a save running now, in this process or another one,
    keeps its file. Best effort: what cannot be listed or removed stays."""
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            match = _TEMPORARY.fullmatch(name)
            if (match and match[2] == target[:_TEMPORARY_TARGET_CHARS]
                    and not _writer_alive(int(match[1]))):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))


def _writer_alive(pid: int) -> bool:
    """Whether the process that named a temp file may still be writing it. Signal 0 probes
    without signalling; Windows has no such probe (its os.kill terminates), so there every
    writer counts as alive. On a file system shared between hosts, a pid names a process of
    this host only: two hosts saving the same path at once race each other anyway."""
    if pid == os.getpid() or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:  # PermissionError: it exists, as another user's process
        return True
    return True


def _fsync_directory(directory: str) -> None:
    """Makes the rename durable: until the directory itself is synced, a power loss may bring
    back the old name. Skipped where directories cannot be opened or synced (Windows, some
    file systems)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


# -- load --------------------------------------------------------------------------------------


def load(opt: Any, path: str | os.PathLike, *, params: bool = True) -> None:
    """Restores a checkpoint written by :func:`save` (see :func:`load_state_dict`): the params
    too, in place, when the file has them (saved with ``params=True``), unless
    ``params=False`` (then its params entries are not read). A file that is not one
    (truncated, damaged, crafted) raises ValueError, the parser's error chained, and changes
    nothing; it is read only as far as it fits this optimizer, so it costs no more than a real
    checkpoint. A path that cannot be opened raises open()'s OSError (FileNotFoundError,
    ...)."""
    with open(path, "rb") as file, malformed(f"checkpoint {os.fspath(path)!r}"):
        sd = _read(opt, file, params)
    restore(opt, sd, params, copy_params=False)  # the params read are arrays of their own


def _read(opt: Any, file: Any, params: bool) -> dict[str, Any]:
    """The state dict in ``file``, read in the order that bounds what a bad file can cost:
    entry names, then the meta (checked against the optimizer before any array is read), then
    each array's header before its data. Params come from their entries only (with
    ``params``), never from the meta."""
    with zipfile.ZipFile(file) as archive:
        meta_entry, entries = _entries(archive)
        sd = _read_meta(archive, meta_entry, len(opt.param_groups))
        check_header(opt, sd)
        _check_entry_count(sd.pop(_NUM_ENTRIES, None), len(entries))
        sd.pop("params", None)
        sd["state"], sd["group_state"], saved_params = _read_arrays(opt, archive, entries,
                                                                    params)
        if saved_params is not None:
            sd["params"] = saved_params
    return sd


def _check_entry_count(saved: Any, found: int) -> None:
    """The number of array entries the meta was saved with (absent from files of older
    versions) against those found: a zip whose directory lost entries (damage the CRCs do not
    see) would otherwise load as a checkpoint without some of its state."""
    if saved is not None and (not is_count(saved) or saved != found):
        raise ValueError(f"checkpoint has {found} array entries; its {_META} says "
                         f"{reprlib.repr(saved)} (entries lost: a damaged zip directory?)")


def _entries(archive: zipfile.ZipFile) -> tuple[zipfile.ZipInfo, list[tuple]]:
    """The meta entry and (kind, index, name, suffix, info) of every other entry; any name
    that is not canonical (see the module docstring), or comes twice, is an error."""
    meta, entries, seen = None, [], set()
    for info in archive.infolist():
        key = info.filename.removesuffix(".npy")
        parsed = [(kind, int(m[1]), m[2], m[3] or "", info)
                  for kind, pattern in _ENTRY_KEYS.items() if (m := pattern.fullmatch(key))]
        if key == info.filename or not (parsed or key == _META):
            raise ValueError(f"checkpoint has an unexpected entry {reprlib.repr(info.filename)}")
        if key in seen:
            raise ValueError(f"checkpoint has entry {info.filename!r} twice")
        seen.add(key)
        if key == _META:
            meta = info
        entries += parsed
    if meta is None:
        raise ValueError(f"checkpoint has no {_META} entry: not a checkpoint of adamkern.optim")
    return meta, entries


def _read_meta(archive: zipfile.ZipFile, info: zipfile.ZipInfo, groups: int) -> dict:
    """The state dict's JSON (its size bounded by the number of groups before it is read)."""
    array = _read_npy(archive, info, _META_BYTES + _META_BYTES_PER_GROUP * groups,
                      lambda dtype, shape: dtype.kind == "U" and shape == (), "one string")
    try:
        sd = json.loads(str(array[()]))
    except ValueError as error:
        raise ValueError(f"checkpoint {_META} is not JSON: {error}") from error
    return require(sd, dict, f"checkpoint {_META}")


def _read_arrays(opt: Any, archive: zipfile.ZipFile, entries: list[tuple],
                 params_wanted: bool) -> tuple[list[dict], list[dict], list | None]:
    """The state, group state and (if wanted and there) params entries, each checked against
    what this optimizer keeps before its data is read (group state is checked in full by
    load_state_dict)."""
    params, buffers = opt.params, known_buffers(opt)
    parts: list[dict[str, dict]] = [{} for _ in params]  # buffer name -> suffix -> array
    param_parts: list[dict[str, np.ndarray]] = [{} for _ in params]  # suffix -> array
    group_state: list[dict[str, np.ndarray]] = [{} for _ in opt.param_groups]
    counts = {"state": len(params), "params": len(params), "group_state": len(group_state)}
    for kind, index, name, suffix, info in entries:
        where = f"checkpoint entry {info.filename!r}"
        if index >= counts[kind]:
            raise ValueError(f"{where}: there are {counts[kind]} "
                             f"{'param groups' if kind == 'group_state' else 'params'}")
        if kind == "group_state":
            group_state[index][name] = _read_npy(
                archive, info, _GROUP_STATE_BYTES,
                lambda dtype, shape: (dtype.kind in "biuf" and
                                      dtype.itemsize * math.prod(shape) <= _GROUP_STATE_BYTES),
                f"numbers of at most {_GROUP_STATE_BYTES} bytes")
        elif kind == "params":
            if params_wanted:
                param = params[index]
                param_parts[index][suffix] = _read_part(
                    archive, info, f"params/{index}", storage_parts(param.dtype, param.shape),
                    suffix)
        elif name not in buffers:
            raise ValueError(f"{where}: {type(opt).__name__} has no state buffer {name!r}")
        else:
            stored = storage_parts(buffer_dtype(opt, params[index], name),
                                   buffers[name].shape(params[index]))
            parts[index].setdefault(name, {})[suffix] = _read_part(archive, info, name, stored,
                                                                   suffix)
    state = [_decoded(opt, index, param, entry, buffers)
             for index, (param, entry) in enumerate(zip(params, parts))]
    return state, group_state, _decoded_params(params, param_parts)


def _read_part(archive: zipfile.ZipFile, info: zipfile.ZipInfo, stem: str,
               stored: dict[str, tuple], suffix: str) -> np.ndarray:
    """The entry ``stem + suffix``, one of the arrays ``stored`` (see storage_parts) says a
    buffer or param is stored as, read only if it has that array's dtype and shape."""
    if suffix not in stored:
        raise ValueError(f"checkpoint entry {info.filename!r}: this optimizer stores {stem} as "
                         f"{[stem + s for s in stored]}")
    dtype, shape = stored[suffix]
    return _read_npy(archive, info, dtype.itemsize * math.prod(shape), _exactly(dtype, shape),
                     f"{dtype} {shape}")


def _decoded_params(params: list[np.ndarray],
                    parts: list[dict[str, np.ndarray]]) -> list[np.ndarray] | None:
    """The params from their entries (None if the file has none): every param, each with
    every part, or the file is refused."""
    if not any(parts):
        return None
    incomplete = [i for i, (param, found) in enumerate(zip(params, parts))
                  if found.keys() != storage_parts(param.dtype, param.shape).keys()]
    if incomplete:
        raise ValueError(f"checkpoint has params entries, but not all of those of params "
                         f"{reprlib.repr(incomplete)} (of {len(params)})")
    return [decode(found, signed=True) for found in parts]


def _decoded(opt: Any, index: int, param: np.ndarray, parts: dict[str, dict],
             buffers: dict) -> dict[str, Any]:
    """The state buffers of param ``index`` from their entries, each with every part."""
    for name, found in parts.items():
        stored = storage_parts(buffer_dtype(opt, param, name), buffers[name].shape(param))
        if found.keys() != stored.keys():
            raise ValueError(f"checkpoint has {sorted(name + s for s in found)} of param "
                             f"{index}, not all of {sorted(name + s for s in stored)}")
    return {name: decode(found, buffers[name].signed) for name, found in parts.items()}


def _exactly(dtype: np.dtype, shape: tuple[int, ...]) -> Callable[[np.dtype, tuple], bool]:
    """The ``fits`` of _read_npy for an entry of exactly ``dtype`` and ``shape``."""
    return lambda d, s: (d, s) == (dtype, shape)


def _read_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int,
              fits: Callable[[np.dtype, tuple], bool], expected: str) -> np.ndarray:
    """One .npy entry, read only as far as it is what the caller expects: its declared size
    is bounded first (zipfile never inflates past it), its header is checked with ``fits``
    before any data is read, and the data must fill the entry exactly and is read to its end
    (where zipfile checks the CRC)."""
    if info.file_size > max_bytes + _NPY_HEADER_BYTES:
        raise ValueError(f"checkpoint entry {info.filename!r} holds {info.file_size} bytes, "
                         f"more than {expected} can")
    with archive.open(info) as member:
        try:
            shape, fortran_order, dtype = _npy_header(member)
        except ValueError as error:  # numpy's, without the entry's name
            raise ValueError(f"checkpoint entry {info.filename!r}: {error}") from error
        if any(n < 0 for n in shape) or dtype.hasobject or not fits(dtype, shape):
            raise ValueError(f"checkpoint entry {info.filename!r} is {dtype} {shape}; expected "
                             f"{expected}")
        size = dtype.itemsize * math.prod(shape)
        if member.tell() + size != info.file_size:
            raise ValueError(f"checkpoint entry {info.filename!r} holds {info.file_size} bytes, "
                             f"not its header's {member.tell()} and {size} of data")
        data = member.read(size)
        if len(data) != size:
            raise ValueError(f"checkpoint entry {info.filename!r} is truncated")
        member.read(1)  # reaches the end of a deflated entry too: there zipfile checks the CRC
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran_order else "C")


def _npy_header(member: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """shape, fortran_order and dtype from a .npy header (formats 1.0 and 2.0, what numpy
    writes for these arrays), leaving ``member`` at the data."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    version = np.lib.format.read_magic(member)
    if version not in readers:
        raise ValueError(f"unsupported .npy format version {version}")
    return readers[version](member)


