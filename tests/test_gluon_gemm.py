"""march/kernels/gluon_gemm.py, the warp-specialised Gluon GEMM (MARCH_RELU_GEMM=gluon): each epilogue compiles
for sm_90 here (in its own process; also in scripts/check_compile.py). On a GPU: the product against float64 at
awkward shapes, with programs that walk one tile, two (one a consumer, K in one ring lap or in several), or an odd
count split between the two consumers, into outputs that start as NaN; the dropout epilogue's mask against
march's; the backward's dh against float64. On CPU, a model of its barrier protocol in random interleavings."""

import re

import pytest
import torch

pytest.importorskip("triton.experimental.gluon")


_COMPILE = """
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.experimental.gluon._runtime import GluonASTSource
from march.kernels import gluon_gemm
signature, constexprs, options = gluon_gemm.compile_spec(1000, 384, 256, int(sys.argv[1]), sys.argv[2] == "1")
ck = triton.compile(GluonASTSource(gluon_gemm._gemm_kernel, signature, constexprs),
                    target=GPUTarget("cuda", 90, 32), options=options)
print(json.dumps({"ptx": ck.asm["ptx"], "shared": ck.metadata.shared}))
"""


@pytest.mark.parametrize("epilogue,b_k_major", [("RELU", True), ("RELU_DROPOUT", True), ("RELU_BWD", False)])
def test_compiles_for_sm90(epilogue, b_k_major):
    # In its own process: once the Triton interpreter has run a kernel in this one (tests/test_relu_feedforward.py's
    # do), its patches to the language break a Gluon compile here ("block_argument has no attribute dtype").
    import json
    import os
    import subprocess
    import sys

    from march.kernels import gluon_gemm

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    args = [str(getattr(gluon_gemm, epilogue).value), str(int(b_k_major))]
    run = subprocess.run([sys.executable, "-c", _COMPILE, *args], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    compiled = json.loads(run.stdout.strip().splitlines()[-1])
    ptx = compiled["ptx"]
    assert "wgmma.mma_async" in ptx
    # the registers setmaxnreg asks for in the warp-specialised region fit the SM (else a hang, not an error)
    raised = {int(r) for r in re.findall(r"setmaxnreg\.inc\.sync\.aligned\.u32\s+(\d+);", ptx)}
    assert {gluon_gemm.DEFAULT_PARTITION_REGS, gluon_gemm.CONSUMER_REGS.value} <= raised
    assert max(raised) == gluon_gemm.DEFAULT_PARTITION_REGS
    assert gluon_gemm.DEFAULT_PARTITION_REGS + gluon_gemm.CONSUMER_REGS.value + gluon_gemm.LOADER_REGS.value <= 512
    assert compiled["shared"] <= 232448  # one block's shared memory on sm_90
    assert (ptx.count("mul.wide.u32") > 0) == (epilogue == "RELU_DROPOUT")  # the Philox rounds of the mask


def test_bad_inputs_are_refused():
    from march.kernels import gluon_gemm

    bf16 = dict(dtype=torch.bfloat16)
    with pytest.raises(ValueError, match=r"expected a \(M, K\) and b \(N, K\), got \(4, 8\) and \(8, 16\)"):
        gluon_gemm.gemm(torch.zeros(4, 8, **bf16), torch.zeros(8, 16, **bf16))
    with pytest.raises(ValueError, match=r"a must be a contiguous bf16 \(4, 8\) .* got torch.float32"):
        gluon_gemm.gemm(torch.zeros(4, 8), torch.zeros(8, 8, **bf16))
    with pytest.raises(ValueError, match=r"a must be .*multiple of 8 columns .* got torch.bfloat16 \(4, 12\)"):
        gluon_gemm.gemm(torch.zeros(4, 12, **bf16), torch.zeros(8, 12, **bf16))
    a, b = torch.zeros(4, 8, **bf16), torch.zeros(8, 8, **bf16)
    with pytest.raises(ValueError, match=r"out must be a contiguous bf16 \(4, 8\)"):
        gluon_gemm.gemm(a, b, out=torch.zeros(8, 4, **bf16).t())
    with pytest.raises(ValueError, match=r"dropout_p = 1.0 is outside \[0, 1\)"):
        gluon_gemm.gemm(a, b, True, dropout_p=1.0)
    with pytest.raises(ValueError, match="dropout is fused only after the ReLU"):
        gluon_gemm.gemm(a, b, dropout_p=0.1)
    with pytest.raises(ValueError, match="dropout needs seed, an int64 tensor of one element on a's device, got None"):
        gluon_gemm.gemm(a, b, True, dropout_p=0.1)
    with pytest.raises(ValueError, match=r"got torch.int32 \(2,\) on cpu"):
        gluon_gemm.gemm(a, b, True, dropout_p=0.1, seed=torch.zeros(2, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"w_out must be a contiguous bf16 \(8, 16\)"):
        gluon_gemm.relu_dropout_bwd(a, torch.zeros(16, 8, **bf16), torch.zeros(4, 16, **bf16), 0.1)


@pytest.mark.gpu
@pytest.mark.parametrize("m,n,k,programs", [(1000, 384, 256, None), (256, 256, 72, 2), (256, 256, 640, 1),
                                            (4096, 3072, 768, None), (333, 136, 72, 1), (7296, 3072, 768, 7),
                                            (128, 128, 64, None)], ids=str)
@pytest.mark.parametrize("relu", [False, True])
def test_matches_float64_gpu(m, n, k, programs, relu):
    from march.kernels import gluon_gemm

    a = torch.randn(m, k, device="cuda").bfloat16()
    b = (torch.randn(n, k, device="cuda") / k**0.5).bfloat16()
    want = a.double() @ b.double().t()
    want = want.clamp_min(0) if relu else want
    out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)
    got = gluon_gemm.gemm(a, b, relu, num_programs=programs, out=out)
    assert got is out and torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, rtol=1e-2, atol=1e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("m,n,k,programs", [(1000, 384, 256, None), (333, 136, 72, 1), (4096, 3072, 768, None)],
                         ids=str)
@pytest.mark.parametrize("dropout_p", [0.1, 0.5])
def test_dropout_draws_marchs_mask_gpu(m, n, k, programs, dropout_p):
    """The epilogue drops what march's kernels drop for the same seed (glu.dropout_keep_mask), bit for bit;
    the kept values against float64."""
    from march.kernels import gluon_gemm
    from march.kernels.glu import dropout_keep_mask

    seed = torch.tensor([20261207], device="cuda", dtype=torch.int64)
    keep = dropout_keep_mask((m, n), dropout_p, seed, "cuda")
    a = torch.randn(m, k, device="cuda").bfloat16()
    b = (torch.randn(n, k, device="cuda") / k**0.5).bfloat16()
    want = torch.where(keep, (a.double() @ b.double().t()).clamp_min(0) / (1 - dropout_p), 0.0)
    out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)
    got = gluon_gemm.gemm(a, b, True, dropout_p=dropout_p, seed=seed, num_programs=programs, out=out)
    assert torch.isfinite(got).all() and (got[~keep] == 0).all()
    torch.testing.assert_close(got.double(), want, rtol=1e-2, atol=2e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("m,d,f,programs", [(1000, 256, 384, None), (333, 72, 136, 1), (4096, 768, 3072, None),
                                            (7296, 768, 3072, 7)], ids=str)
@pytest.mark.parametrize("dropout_p", [0.0, 0.1])
def test_relu_dropout_bwd_gpu(m, d, f, programs, dropout_p):
    """dh = where(a > 0, dy W_out / (1 - p), 0), W_out read N-major and a's tile by TMA into the output's buffer:
    against float64 into NaN-poisoned outputs, with a ~half zeros."""
    from march.kernels import gluon_gemm

    dy = torch.randn(m, d, device="cuda").bfloat16()
    w_out = (torch.randn(d, f, device="cuda") / d**0.5).bfloat16()
    a = torch.randn(m, f, device="cuda").clamp_min(0).bfloat16()
    want = torch.where(a > 0, (dy.double() @ w_out.double()) / (1 - dropout_p), 0.0)
    out = torch.full((m, f), float("nan"), device="cuda", dtype=torch.bfloat16)
    got = gluon_gemm.relu_dropout_bwd(dy, w_out, a, dropout_p, out=out, num_programs=programs)
    assert got is out and torch.isfinite(got).all() and (got[a == 0] == 0).all()
    torch.testing.assert_close(got.double(), want, rtol=1e-2, atol=2e-2)


class _Barrier:
    """An mbarrier of arrival count 1: each arrival completes its current phase. ``try_wait.parity(P)`` passes once
    the phase of parity P has completed, i.e. while the number of completed phases has the other parity."""

    def __init__(self):
        self.completed = 0

    def passed(self, parity: int) -> bool:
        return (self.completed & 1) != parity


def _run_protocol(my_tiles: int, k_tiles: int, stages: int, turns: bool, seed: int) -> list[str]:
    """The ring protocol of gluon_gemm's partitions, each step run in a random interleaving, with TMA loads that land
    late: returns the violations (a slot read before its position landed or after it was overwritten, or a
    deadlock). Each agent mirrors its partition's waits and arrives; ``turns=False`` is session 25's protocol."""
    import random

    rng = random.Random(seed)
    ready, empty, turn = ([_Barrier() for _ in range(n)] for n in (stages, stages, 2))
    slot = [None] * stages  # which ring position each slot holds
    in_flight = []  # TMA loads issued, not landed: (slot, position)
    bad = []

    def loader():
        for p in range(my_tiles * k_tiles):
            s = p % stages
            while not empty[s].passed(((p // stages) & 1) ^ 1):
                yield
            in_flight.append((s, p))
            yield

    def consumer(which):
        for j in range(which, my_tiles, 2):
            while turns and not turn[which].passed(((j // 2) & 1) ^ (1 - which)):
                yield
            p = j * k_tiles
            for k in range(k_tiles):
                s = p % stages
                while not ready[s].passed((p // stages) & 1):
                    yield
                if slot[s] != p:
                    bad.append(f"consumer {which} read slot {s} for position {p}, holding {slot[s]}")
                yield  # the wgmma of p in flight; the one before it retires
                if k > 0:
                    if slot[(p - 1) % stages] != p - 1:
                        bad.append(f"position {p - 1} overwritten before its wgmma retired")
                    empty[(p - 1) % stages].completed += 1
                p += 1
            if turns:
                turn[1 - which].completed += 1
            yield
            if slot[(p - 1) % stages] != p - 1:
                bad.append(f"position {p - 1} overwritten before its wgmma retired")
            empty[(p - 1) % stages].completed += 1

    agents = [loader(), consumer(0), consumer(1)]
    for _ in range(100_000):
        if not agents and not in_flight:
            return bad
        if in_flight and rng.random() < 0.3:  # a load lands: its bytes, then its ready arrival
            s, p = in_flight.pop(rng.randrange(len(in_flight)) if rng.random() < 0.1 else 0)
            slot[s] = p
            ready[s].completed += 1
        elif agents:
            agent = rng.choice(agents)
            if next(agent, StopIteration) is StopIteration:
                agents.remove(agent)
    return bad + ["deadlock"]


@pytest.mark.parametrize("my_tiles,k_tiles,stages", [(1, 12, 4), (2, 2, 4), (7, 12, 4), (6, 1, 4), (5, 3, 2)], ids=str)
def test_ring_protocol_model(my_tiles, k_tiles, stages):
    assert all(not _run_protocol(my_tiles, k_tiles, stages, turns=True, seed=seed) for seed in range(40))


def test_ring_protocol_model_finds_the_session_25_race():
    # without the turns, consumer 1 waits on ready[s] two laps early and reads before the load lands
    assert any(_run_protocol(7, 12, 4, turns=False, seed=seed) for seed in range(40))
