"""march.kernels.reduce.sum_rows: the fixed-order partial sums behind the deterministic weight
gradients (RMSNorm's dw, the attention bias-table gradient)."""

import pytest
import torch

from march.kernels.reduce import sum_rows


@pytest.mark.parametrize("a,r,c", [(1, 1, 1), (1, 528, 768), (12, 97, 32), (3, 130, 17), (2, 0, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sum_rows_matches_a_float64_sum(device, a, r, c, dtype):
    x = torch.randn(a, r, c, device=device) * 3
    out = torch.full((a, c), float("nan"), dtype=dtype, device=device)  # poisoned: every element written
    sum_rows(x, out)
    expected = x.double().sum(1)
    tol = dict(rtol=0, atol=1e-4 * max(r, 1) ** 0.5) if dtype == torch.float32 else dict(rtol=8e-3, atol=1e-2)
    torch.testing.assert_close(out.double(), expected.to(dtype).double() if dtype != torch.float32 else expected, **tol)


def test_sum_rows_writes_a_transposed_view_and_is_bit_identical(device):
    """The table gradient's use: (H, ROWS, NB_P2) partials, the first NB columns, into an (NB, H)
    tensor's transposed view; two calls give the same bits."""
    x = torch.randn(12, 300, 32, device=device)
    outs = []
    for _ in range(2):
        out = torch.full((30, 12), float("nan"), dtype=torch.bfloat16, device=device)
        sum_rows(x[:, :, :30], out.t())
        outs.append(out)
    assert torch.equal(outs[0], outs[1])
    torch.testing.assert_close(outs[0].float(), x[:, :, :30].double().sum(1).t().float(), rtol=8e-3, atol=1e-2)


def test_sum_rows_takes_two_dimensional_partials(device):
    x = torch.randn(70, 40, device=device)
    out = sum_rows(x, torch.empty(40, device=device))
    torch.testing.assert_close(out.double(), x.double().sum(0), rtol=0, atol=1e-4)


@pytest.mark.parametrize("x_shape,x_dtype,out_shape,match", [
    ((2, 3, 4), torch.float16, (2, 4), "fp32"),
    ((2, 3, 4), torch.float32, (2, 3), r"\(A, C\) = \(2, 4\)"),
    ((2, 3, 4, 1), torch.float32, (2, 4), "fp32"),
])
def test_sum_rows_rejects_bad_shapes_and_dtypes(device, x_shape, x_dtype, out_shape, match):
    with pytest.raises(ValueError, match=match):
        sum_rows(torch.zeros(x_shape, dtype=x_dtype, device=device), torch.zeros(out_shape, device=device))
