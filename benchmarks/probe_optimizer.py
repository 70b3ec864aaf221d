"""The training step's optimizer update alone: AdamW over one preset's parameters, each torch
implementation timed in the same run, in TB/s against the copy ceiling.

    python3 -m benchmarks.probe_optimizer [--preset Baseline] [--out F]

Why: session 17's Baseline profile spent 1.15 ms a step in the fused AdamW's 11
``multi_tensor_apply`` launches. With bf16 parameters the optimizer states are bf16 too, so an update
reads p, g, m, v and writes p, m, v: 14 bytes a parameter, 3.1 GB for the Baseline's 222M, 0.73 ms at
the 4.26 TB/s copy ceiling. 1.15 ms is 2.7 TB/s: up to ~0.3 ms a step, most of the 0.44 ms
between run K and 50% MFU, if an update ran near the ceiling.

Implementations (AdamW, lr 1e-4, β 0.9/0.95, weight decay 0.1, as the e2e benchmark and run.py):
    fused      torch.optim.AdamW(fused=True): the e2e benchmark's
    foreach    torch.optim.AdamW(foreach=True)
    compiled   the foreach step under torch.compile (inductor's fused Triton kernels over the list)
    march      march.train.optim.AdamW: one Triton launch over every tensor, 16-byte vectors
               (predicted before its first GPU run: ~3.6-3.9 TB/s, ~0.8-0.85 ms on the H200);
               march:BLOCKxWARPS runs its kernel at other launch settings (a sweep)
    fused_flat torch's fused AdamW over one flat tensor holding every parameter (one gradient, one m,
               one v): the bound on what flattening (as DeepSpeed's bf16 optimizer does) buys the
               fused kernel, whose launches carry at most 320 chunks of 64Ki elements each
Each row is the median of do_bench over repeated steps (the states change each step, the traffic
does not), launched from Python as the benchmark's step launches it (outside the CUDA graph).
On CPU: the Tiny preset, wall time, a smoke run of the same code.
"""

from __future__ import annotations

import argparse
import json

import torch

from benchmarks import common

BYTES_PER_PARAM_BF16 = 14  # read p, g, m, v; write p, m, v (2 bytes each)
IMPLS = ("fused", "foreach", "compiled", "fused_flat", "march")


def _params(preset: str) -> list[torch.nn.Parameter]:
    """The preset's parameters in bf16 on the benchmark's device, each with a random gradient."""
    from march.models import T5Model, get_preset

    device = "cuda" if common.ON_GPU else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = T5Model(get_preset(preset), kernels="eager").to(torch.bfloat16)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    return params


def _optimizer_step(impl: str, params):
    """A callable doing one AdamW update of ``params`` with ``impl``."""
    if impl.startswith("march:"):  # march:BLOCKxWARPS, the kernel at other launch settings
        return _march_at(impl, params)
    if impl not in IMPLS:
        raise ValueError(f"unknown optimizer implementation {impl!r}; choose from {IMPLS} or march:BLOCKxWARPS")
    kwargs = dict(lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    if impl == "fused_flat":
        flat = torch.nn.Parameter(torch.cat([p.detach().flatten() for p in params]))  # (n,)
        flat.grad = torch.cat([p.grad.flatten() for p in params])
        return torch.optim.AdamW([flat], fused=common.ON_GPU, **kwargs).step
    if impl == "fused":
        return torch.optim.AdamW(params, fused=common.ON_GPU, **kwargs).step
    if impl == "march":
        from march.train.optim import AdamW

        return AdamW(params, **kwargs).step
    optimizer = torch.optim.AdamW(params, foreach=True, **kwargs)
    if impl == "foreach":
        return optimizer.step
    return torch.compile(optimizer.step)


def _march_at(impl: str, params):
    """march's update with BLOCK elements a program and WARPS warps (``march:4096x8`` is the default)."""
    from march.kernels.adamw import AdamWPlan, adamw_step_

    try:
        block, warps = (int(x) for x in impl.removeprefix("march:").split("x"))
    except ValueError:
        raise ValueError(f"{impl!r}: expected march:BLOCKxWARPS, e.g. march:8192x8") from None
    m, v = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
    plan = AdamWPlan(params, m, v, block=block, num_warps=warps)
    grads, count = [p.grad for p in params], [0]

    def step():
        count[0] += 1
        adamw_step_(plan, grads, step=count[0], lr=1e-4, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)

    return step


def measure(preset: str, impls=IMPLS) -> dict:
    params = _params(preset)
    n = sum(p.numel() for p in params)
    traffic = BYTES_PER_PARAM_BF16 * n
    copy = (common.CEILINGS.get(common.gpu_name()) or {}).get("copy_tbps")
    rows = []
    for impl in impls:
        step = _optimizer_step(impl, params)
        for _ in range(3):  # creates the states; compiles the compiled row
            step()
        ms = common.time_ms(step)
        tbps = traffic / (ms * 1e-3) / 1e12
        rows.append({"impl": impl, "ms": ms, "TB/s": tbps, "of_copy_ceiling": tbps / copy if copy else None})
    return {"preset": preset, "gpu": common.gpu_name(), "torch": torch.__version__, "params": n,
            "tensors": len(params), "bytes_per_step": traffic, "copy_ceiling_tbps": copy, "rows": rows}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default=None, help="default: Baseline on a GPU, Tiny on CPU")
    ap.add_argument("--impls", default=",".join(IMPLS), help=f"comma-separated, of {IMPLS}")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    impls = tuple(args.impls.split(","))
    for impl in impls:
        if impl not in IMPLS and not impl.startswith("march:"):
            ap.error(f"unknown --impls entry {impl!r}; choose from {IMPLS}")
    result = measure(args.preset or common.size("Baseline", "Tiny"), impls)
    print(f"{result['preset']}: {result['params'] / 1e6:.1f}M parameters in {result['tensors']} tensors, "
          f"{result['bytes_per_step'] / 1e9:.2f} GB an update")
    for r in result["rows"]:
        share = f" ({r['of_copy_ceiling']:.0%} of copy)" if r["of_copy_ceiling"] else ""
        print(f"  {r['impl']:9s} {r['ms']:8.3f} ms  {r['TB/s']:5.2f} TB/s{share}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
