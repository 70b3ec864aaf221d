"""Session 17 probe: the RMSNorm backward's row loop double-buffered in registers (BWD_PREFETCH:
the next row block's x, dy, ds loaded before this block's math) and its dw summed over each row
block as it goes (BWD_DW_VEC: 1/BLOCK_M of the accumulator's registers), against
the shared-memory software pipeline (STAGES, the default: 3 stages, 2 programs per SM), at the step's shapes
(enc 32768×768, dec 7296×768), as add_rms_norm with dropout 0.1 and plain. CUDA-graph times of
``_rms_norm_bwd`` alone, 3 rotated sets; outputs compared bit for bit with the default's.
python probe_rms_bwd.py OUT.json"""
import importlib
import itertools
import json
import sys

import torch

from benchmarks import common
from march.kernels.glu import make_seed

mod = importlib.import_module("march.kernels.rms_norm")
out = sys.argv[1]
rows = []
P = 0.1
seed = make_seed(3, "cuda")
default_cfg = mod._fwd_config

# (prefetch, dw as one row (BWD_DW_VEC), block_m, warps, programs per SM, stages): the default first
CONFIGS = [(False, False, 4, 4, 2, 3), (False, False, 4, 8, 2, 3), (False, False, 2, 4, 4, 3),
           (False, False, 4, 4, 8, 1), (False, True, 4, 4, 2, 3), (False, True, 4, 8, 2, 3),
           (False, True, 4, 8, 3, 3)] + [
    (True, vec, bm, wp, pp, 1) for vec in (False, True) for bm, wp in ((2, 4), (4, 4), (4, 8), (8, 8))
    for pp in (2, 4)]

for (name, m), kind in itertools.product((("enc", 32768), ("dec", 7296)), ("add_dropout", "plain")):
    d = 768
    sets = []
    for _ in range(3):
        s = torch.randn(m, d, device="cuda", dtype=torch.bfloat16)
        w = (1 + 0.1 * torch.randn(d, device="cuda")).to(torch.bfloat16)
        dy = torch.randn(m, d, device="cuda", dtype=torch.bfloat16)
        rstd = torch.rsqrt(s.float().pow(2).mean(-1) + 1e-6)
        ds = torch.randn(m, d, device="cuda", dtype=torch.bfloat16) if kind == "add_dropout" else None
        sets.append((dy, s, w, rstd, ds))
    p = P if kind == "add_dropout" else 0.0
    nbytes = (5 if kind == "add_dropout" else 3) * m * d * 2
    ref = None
    for prefetch, vec, block_m, warps, ppsm, stages in CONFIGS:
        mod.BWD_PREFETCH, mod.BWD_DW_VEC, mod.BWD_PROGRAMS_PER_SM, mod.BWD_STAGES = prefetch, vec, ppsm, stages
        mod._fwd_config = lambda n, bm=block_m, wp=warps: (bm, default_cfg(n)[1], wp)
        tag = f"{name} {kind:11s} pre={prefetch:d} vec={vec:d} bm={block_m} w={warps} ppsm={ppsm} st={stages}"
        try:
            got = mod._rms_norm_bwd(*sets[0], p, seed if p else None)
            ref = got if ref is None else ref
            # dx, dxd bit-equal to the default's; dw's partials depend on the row split (ppsm, block_m)
            same = all(torch.equal(a, b) for a, b in zip(got[:2], ref[:2]))
            dw_err = (got[2].float() - ref[2].float()).abs().max().item()
            ms = common.graph_ms([lambda s_=s_: mod._rms_norm_bwd(*s_, p, seed if p else None) for s_ in sets])
        except Exception as e:  # noqa: BLE001 — a config that fails to compile is a result too
            print(f"{tag}: {type(e).__name__} {e}"[:300], flush=True)
            continue
        row = dict(shape=name, M=m, kind=kind, prefetch=prefetch, dw_vec=vec, block_m=block_m, warps=warps,
                   programs_per_sm=ppsm, stages=stages, ms=ms, tbps=nbytes / ms / 1e9, dx_bit_equal=same,
                   dw_max_diff=dw_err)
        rows.append(row)
        print(f"{tag}: {ms * 1e3:7.1f} us {row['tbps']:.2f} TB/s dx_equal={same} dw_diff={dw_err:.3g}", flush=True)
    del sets, ref
mod._fwd_config = default_cfg
mod.BWD_PREFETCH, mod.BWD_DW_VEC, mod.BWD_PROGRAMS_PER_SM, mod.BWD_STAGES = False, False, 2, 3
json.dump({"gpu": torch.cuda.get_device_name(), "rows": rows}, open(out, "w"), indent=1)
