"""Checkpoints of :mod:`adamkern.optim` optimizers: ``state_dict`` as plain data, its
validation and loading (everything checked before anything changes), and the ``.npz`` file
format of ``save``/``load``.

A file holds ``__meta__`` (the JSON of the state dict without arrays, and ``num_entries``,
how many other entries there are), one entry per state array: ``state/<param
index>/<buffer>`` (bfloat16 buffers as ``<buffer>.bfloat16``, their bits as uint16; 8-bit
buffers as ``<buffer>.codes`` and ``<buffer>.absmax``) and ``group_state/<group
index>/<name>``, and, when saved with ``params=True``, one entry per param: ``params/<param
index>`` (a bfloat16 param as ``params/<index>.bfloat16``, its bits). Indices are plain
decimals (no sign, no leading zero); no other entry is valid.

>>> opt.save("checkpoint.npz", params=True)    # the params too: a full resume
>>> resumed.load("checkpoint.npz")      # ValueError, resumed unchanged, if it does not fit

What a checkpoint restores:

- the state, group state and step count; the params (in place, into the optimizer's own
  arrays) when the file has them, unless ``load(path, params=False)``;
- each group's hyperparameters. A callable (a schedule) cannot be saved, only its repr; one
  with ``state_dict()``/``load_state_dict()`` (``ReduceLROnPlateau``: its reduced lr, best
  value, bad-epoch and cooldown counters) has its state saved too, in the meta, and on load
  that state goes into the callable the optimizer holds at that place, which must be of the
  same kind (else ValueError). A plain schedule is a pure function of the step: the
  optimizer's own one stays, and the step count resumes it;
- ``max_grad_norm`` and ``max_grad_value``, checked as the constructor checks them. They
  change every update as the lr does, and the lr of each group is restored from the
  checkpoint: keeping the constructor's thresholds instead would resume another run than the
  one saved (or refusing a mismatch would ask of the code that resumes what is asked of no
  other hyperparameter). To resume with other thresholds, assign them after ``load``.
  ``state_dtype`` and ``master_weights`` are different: they are the format of the saved
  state, so another value is refused, not converted.

Not in a checkpoint: ``rounding`` and ``seed`` (constructor options; the stochastic rounding
of a step is drawn from them and the step count, so an optimizer built the same way resumes
it), ``history``, and a ``LossScaler`` (it has its own ``state_dict``).

Loading trusts nothing it is given: a file is read only as far as it matches what this
optimizer's own state would be (entry names, the meta's group sizes, each array header's
dtype and shape, each entry's size), so a crafted file costs no more memory or time than a
real checkpoint of the same optimizer; a value the optimizer's op would refuse at the next
step is refused at load. Every problem raises ValueError (a parser's own error chained as its
cause); only a path that cannot be opened raises ``open``'s own OSError (FileNotFoundError,
PermissionError, IsADirectoryError): that is about the path, not about a checkpoint. A
rejected load leaves everything as it was: params, state, group state, step count, groups,
clipping, and the callables' states (loaded into them for the checks, put back on failure).
"""

from __future__ import annotations

from adamkern._checkpoint_file import load, save
from adamkern._checkpoint_state import load_state_dict, state_dict

__all__ = ["load", "load_state_dict", "save", "state_dict"]
