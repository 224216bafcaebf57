"""adamkern.torch.Adafactor: torch.optim.Adafactor with its step run by adamkern.adafactor_.

The class is torch's own with one method replaced: the constructor, its checks and defaults,
``_init_group`` (which creates the state as torch does: ``step``, ``row_var``/``col_var`` or
``variance``), the step hooks and ``state_dict`` are torch's, so checkpoints move both ways.
"""

from __future__ import annotations

from typing import Any

import torch

from adamkern import ops
from adamkern._torch_tensors import check_cuda

__all__ = ["Adafactor"]

_DTYPES = (torch.float32, torch.float64)
_HYPERPARAMETERS = ("lr", "beta2_decay", "eps", "d", "weight_decay", "maximize")


def _view(tensor: torch.Tensor, what: str):
    """A NumPy view of a CPU tensor, or the CUDA tensor itself (adamkern.cuda steps it)."""
    if tensor.device.type not in ("cpu", "cuda") or tensor.dtype not in _DTYPES \
            or tensor.is_sparse:
        raise ValueError(f"adamkern.torch.Adafactor steps dense float32/float64 CPU or CUDA "
                         f"tensors; {what} is a {tensor.dtype} tensor on {tensor.device}")
    if not tensor.is_contiguous():
        raise ValueError(f"adamkern.torch.Adafactor: {what} is not contiguous")
    if tensor.device.type == "cuda":
        return check_cuda(tensor, what)
    return tensor.detach().numpy()


class Adafactor(torch.optim.Adafactor):
    """``torch.optim.Adafactor`` (same constructor, state and checkpoints) stepped by
    :func:`adamkern.adafactor_`: float32/float64 contiguous CPU tensors (CUDA tensors with
    adamkern's CUDA build); ``foreach`` is
    recorded but adamkern's kernel always runs. Results are within a few ULP of torch's
    single-tensor path (docs/optimizers.md). A step that raises changes nothing.

    >>> opt = adamkern.torch.Adafactor(model.parameters(), lr=1e-2)
    >>> loss.backward(); opt.step(); opt.zero_grad()
    """

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        calls = []
        created = []
        try:
            for group in self.param_groups:
                new = [p for p in group["params"] if p.grad is not None and not self.state[p]]
                params, grads, row_vars, col_vars, variances, steps = [], [], [], [], [], []
                self._init_group(group, params, grads, row_vars, col_vars, variances, steps)
                created += new
                calls += self._calls(group, params, grads, row_vars, col_vars, variances, steps)
            for call, _ in calls:  # hyperparameters changed since: refused before any step
                ops.adafactor_([], [], [], [], [], step=[],
                               **{k: v for k, v in call.items() if k in _HYPERPARAMETERS})
            for call, step_tensors in calls:
                ops.adafactor_(**call)
                for step in step_tensors:
                    step += 1
        except Exception:
            for p in created:  # the state this step created goes again
                self.state.pop(p, None)
            raise
        return loss

    def _calls(self, group, params, grads, row_vars, col_vars, variances, steps):
        """One adafactor_ call per (device, dtype) of the group's params, with torch's eps1: None
        resolves to the machine epsilon of the group's first param with a grad."""
        if not params:
            return []
        eps1, eps2 = group["eps"]
        if eps1 is None:
            eps1 = torch.finfo(params[0].dtype).eps
        lr = group["lr"]
        lr = float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)
        by_dtype: dict[tuple, list[int]] = {}
        for i, p in enumerate(params):
            by_dtype.setdefault((p.device, p.dtype), []).append(i)
        calls = []
        for indices in by_dtype.values():
            def views(tensors, name):
                return [None if tensors[i] is None else _view(tensors[i], f"{name} of a param")
                        for i in indices]
            call = dict(params=views(params, "a param"), grads=views(grads, "the grad"),
                        row_vars=views(row_vars, "row_var"), col_vars=views(col_vars, "col_var"),
                        variances=views(variances, "variance"),
                        step=[float(steps[i].item()) + 1.0 for i in indices], lr=lr,
                        beta2_decay=group["beta2_decay"], eps=(eps1, eps2), d=group["d"],
                        weight_decay=group["weight_decay"], maximize=group["maximize"])
            calls.append((call, [steps[i] for i in indices]))
        return calls
