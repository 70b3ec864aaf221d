"""benchmarks/gluon_gemm.py, the warp-specialised Gluon GEMM experiment: it compiles for sm_90 here (also in
scripts/check_compile.py); on a GPU it matches a float64 product at awkward shapes, with programs that walk
one tile, several, or an odd count split between the two consumers, into outputs that start as NaN."""

import re

import pytest
import torch

pytest.importorskip("triton.experimental.gluon")


def test_compiles_for_sm90():
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    from benchmarks import gluon_gemm

    signature, constexprs, options = gluon_gemm.compile_spec(1000, 384, 256, relu=True)
    ck = triton.compile(GluonASTSource(gluon_gemm._gemm_kernel, signature, constexprs),
                        target=GPUTarget("cuda", 90, 32), options=options)
    ptx = ck.asm["ptx"]
    assert "wgmma.mma_async" in ptx
    # the registers setmaxnreg asks for in the warp-specialised region fit the SM (else a hang, not an error)
    raised = {int(r) for r in re.findall(r"setmaxnreg\.inc\.sync\.aligned\.u32\s+(\d+);", ptx)}
    assert {gluon_gemm.DEFAULT_PARTITION_REGS, gluon_gemm.CONSUMER_REGS.value} <= raised
    assert max(raised) == gluon_gemm.DEFAULT_PARTITION_REGS
    assert gluon_gemm.DEFAULT_PARTITION_REGS + gluon_gemm.CONSUMER_REGS.value + gluon_gemm.LOADER_REGS.value <= 512
    assert ck.metadata.shared <= 232448  # one block's shared memory on sm_90


def test_bad_inputs_are_refused():
    from benchmarks import gluon_gemm

    with pytest.raises(ValueError, match=r"expected bf16 a \(M, K\) and b \(N, K\), got torch.float32"):
        gluon_gemm.gemm(torch.zeros(4, 8), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="K = 12 and N = 8 must be multiples of 8"):
        gluon_gemm.gemm(torch.zeros(4, 12, dtype=torch.bfloat16), torch.zeros(8, 12, dtype=torch.bfloat16))


@pytest.mark.gpu
@pytest.mark.parametrize("m,n,k,programs", [(1000, 384, 256, None), (4096, 3072, 768, None), (333, 136, 72, 1),
                                            (7296, 3072, 768, 7), (128, 128, 64, None)], ids=str)
@pytest.mark.parametrize("relu", [False, True])
def test_matches_float64_gpu(m, n, k, programs, relu):
    from benchmarks import gluon_gemm

    a = torch.randn(m, k, device="cuda").bfloat16()
    b = (torch.randn(n, k, device="cuda") / k**0.5).bfloat16()
    want = a.double() @ b.double().t()
    want = want.clamp_min(0) if relu else want
    out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)
    got = gluon_gemm.gemm(a, b, relu, num_programs=programs, out=out)
    assert got is out and torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, rtol=1e-2, atol=1e-2)
