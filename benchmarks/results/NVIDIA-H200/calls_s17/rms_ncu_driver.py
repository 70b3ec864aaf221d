"""Session 17: the step's RMSNorm kernels for Nsight Compute. The encoder's add_rms_norm with
dropout 0.1 at 32768 × 768 bf16: forward, then backward (dy and ds given), three times each (ncu
skips the first, which compiles). python rms_ncu_driver.py [plain]"""
import importlib
import sys

import torch

from march.kernels.glu import make_seed

mod = importlib.import_module("march.kernels.rms_norm")
plain = len(sys.argv) > 1 and sys.argv[1] == "plain"
m, d, p = 32768, 768, 0.0 if plain else 0.1
x = torch.randn(m, d, device="cuda", dtype=torch.bfloat16)
res = None if plain else torch.randn(m, d, device="cuda", dtype=torch.bfloat16)
w = (1 + 0.1 * torch.randn(d, device="cuda")).to(torch.bfloat16)
dy = torch.randn(m, d, device="cuda", dtype=torch.bfloat16)
ds = None if plain else torch.randn(m, d, device="cuda", dtype=torch.bfloat16)
seed = make_seed(3, "cuda")
for _ in range(3):
    y, s, rstd = mod._rms_norm_fwd(x, res, w, 1e-6, p, seed if p else None)
    mod._rms_norm_bwd(dy, s if res is not None else x, w, rstd, ds, p, seed if p else None)
torch.cuda.synchronize()
print("done")
