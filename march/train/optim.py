"""``AdamW``: torch.optim.AdamW's update (decoupled weight decay) in one Triton launch per parameter
group and dtype (``march.kernels.adamw``), a drop-in for the training step's optimizer.

Same hyperparameters, same math (fp32 arithmetic, states in the parameter's dtype, as torch's fused
AdamW) and the same state_dict layout as torch.optim.AdamW (``step``, ``exp_avg``, ``exp_avg_sq``
per parameter), so checkpoints load either way. torch's keyword arguments are accepted, so that code
written for torch.optim.AdamW runs unchanged: ``foreach`` and ``fused`` pick among torch's
implementations and are ignored here (march's update is always its one launch); ``amsgrad``,
``maximize``, ``capturable`` and ``differentiable`` are supported only as False (True raises). A
hyperparameter given as a one-element tensor (torch allows a tensor lr) is read as a float each
step (a device sync if it lives on the GPU). Not supported: sparse gradients, capture in a CUDA graph
(the step count is a host integer, as in torch's non-capturable AdamW). Parameters on a CPU without
the Triton interpreter take the eager update (``march.kernels.reference.adamw_``).
"""

from __future__ import annotations

import torch

from march.kernels import reference
from march.kernels._utils import use_triton
from march.kernels.adamw import AdamWPlan, adamw_step_


def _scalar(name: str, value) -> float:
    """A hyperparameter as a Python float: a one-element tensor is read (a sync if on the GPU), since
    the kernel takes host scalars; anything else that float() refuses raises, naming it."""
    if torch.is_tensor(value):
        if value.numel() != 1:
            raise ValueError(f"AdamW: {name} must be a number or a one-element tensor, got a tensor of shape "
                             f"{tuple(value.shape)}")
        return float(value.item())
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"AdamW: {name} must be a number, got {value!r}") from None


class AdamW(torch.optim.Optimizer):
    """AdamW: p ← p·(1 − lr·λ) − lr·m̂ / (√v̂ + ε), m̂ and v̂ the bias-corrected moment estimates
    (β1, β2 = ``betas``, λ = ``weight_decay``); see ``march.kernels.adamw`` for the update."""

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None):
        for flag, value in (("amsgrad", amsgrad), ("maximize", maximize), ("capturable", capturable),
                            ("differentiable", differentiable)):
            if value:
                raise ValueError(f"AdamW: {flag}=True is not supported (march's AdamW implements {flag}=False only)")
        lr, eps, weight_decay = _scalar("lr", lr), _scalar("eps", eps), _scalar("weight_decay", weight_decay)
        betas = tuple(_scalar("betas", b) for b in betas)
        if not lr >= 0.0:
            raise ValueError(f"AdamW: invalid lr {lr} (must be >= 0)")
        if not eps >= 0.0:
            raise ValueError(f"AdamW: invalid eps {eps} (must be >= 0)")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"AdamW: invalid betas {betas} (two values in [0, 1))")
        if not weight_decay >= 0.0:
            raise ValueError(f"AdamW: invalid weight_decay {weight_decay} (must be >= 0)")
        # foreach / fused: accepted for torch's signature; march has one implementation. The group keys
        # torch's AdamW keeps are kept too, so a state_dict's param_groups read the same both ways.
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=False,
                                      maximize=False, foreach=foreach, capturable=False, differentiable=False,
                                      fused=fused))
        self._plans: dict[tuple, AdamWPlan] = {}
        self.register_load_state_dict_post_hook(lambda opt: opt._plans.clear())  # its states are new tensors

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for flag in ("amsgrad", "maximize", "capturable", "differentiable"):
                if group.get(flag):
                    raise ValueError(f"AdamW: {flag}=True is not supported (a param group or a loaded torch "
                                     "state_dict set it)")
            batches: dict[tuple, list[torch.Tensor]] = {}  # one launch per (device, dtypes, step count)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                elif torch.is_tensor(state["step"]):  # loaded from torch.optim.AdamW's state_dict
                    state["step"] = int(state["step"].item())
                state["step"] += 1
                key = (p.device, p.dtype, p.grad.dtype, state["step"])
                batches.setdefault(key, []).append(p)
            beta1, beta2 = (_scalar("betas", b) for b in group["betas"])
            hyper = dict(lr=_scalar("lr", group["lr"]), beta1=beta1, beta2=beta2, eps=_scalar("eps", group["eps"]),
                         weight_decay=_scalar("weight_decay", group["weight_decay"]))
            for (_, _, _, step), params in batches.items():
                grads = [p.grad for p in params]
                m = [self.state[p]["exp_avg"] for p in params]
                v = [self.state[p]["exp_avg_sq"] for p in params]
                if not use_triton(params[0]):
                    reference.adamw_(params, grads, m, v, step=step, **hyper)
                    continue
                plan_key = tuple(map(id, params))
                plan = self._plans.get(plan_key)
                if plan is None or not plan.matches(params):
                    plan = self._plans[plan_key] = AdamWPlan(params, m, v)
                adamw_step_(plan, grads, step=step, **hyper)
        return loss
