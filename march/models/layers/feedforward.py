"""T5 feedforward blocks as drop-in modules: HF ``T5DenseActDense`` / ``T5DenseGatedActDense``."""

from __future__ import annotations

from torch import nn

from march.kernels import feedforward, gated_feedforward, reference
from march.kernels.glu import check_dropout
from march.kernels.reference import canonical_activation
from march.models.layers.norm import check_kernels


class _FeedForwardBase(nn.Module):
    def __init__(self, d_model: int, d_ff: int, activation: str, dropout: float, kernels: str):
        super().__init__()
        if d_model <= 0 or d_ff <= 0:
            raise ValueError(f"d_model and d_ff must be positive, got {d_model}, {d_ff}")
        self.activation = canonical_activation(activation)
        self.dropout = check_dropout(dropout)
        self.kernels = check_kernels(kernels)

    def _p(self) -> float:
        return self.dropout if self.training else 0.0

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, dropout={self.dropout}, kernels={self.kernels!r}"


class FeedForward(_FeedForwardBase):
    """y = wo(dropout(act(wi(x)))), bias-free: a drop-in for HF ``T5DenseActDense`` (``wi``, ``wo``).

    The activation and dropout are one fused Triton kernel (seeded from torch's RNG); matmuls are cuBLAS.
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", dropout: float = 0.0,
                 kernels: str = "auto"):
        super().__init__(d_model, d_ff, activation, dropout, kernels)
        self.wi = nn.Linear(d_model, d_ff, bias=False)
        self.wo = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x, seed=None):  # (..., d_model) -> (..., d_model)
        """``seed``: the fused dropout's seed (None: drawn from torch's RNG; the eager path's
        ``torch.nn.functional.dropout`` ignores it)."""
        if self.kernels == "eager":
            return reference.feedforward(x, self.wi.weight, self.wo.weight, self.activation, self._p())
        return feedforward(x, self.wi.weight, self.wo.weight, self.activation, self._p(), seed)


class GatedFeedForward(_FeedForwardBase):
    """y = wo(dropout(act(wi_0(x)) · wi_1(x))), bias-free: a drop-in for HF ``T5DenseGatedActDense``
    (``wi_0`` gate, ``wi_1`` up, ``wo``). HF's "gated-gelu" (gelu_new) is ``activation="gelu_tanh"``.

    Fused path: one GEMM for [wi_0 | wi_1], the fused GLU(+dropout) kernel, the down GEMM
    (see ``march.kernels.feedforward``).
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu_tanh", dropout: float = 0.0,
                 kernels: str = "auto"):
        super().__init__(d_model, d_ff, activation, dropout, kernels)
        self.wi_0 = nn.Linear(d_model, d_ff, bias=False)
        self.wi_1 = nn.Linear(d_model, d_ff, bias=False)
        self.wo = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x, seed=None):  # (..., d_model) -> (..., d_model); seed: as FeedForward's
        if self.kernels == "eager":
            return reference.gated_feedforward(x, self.wi_0.weight, self.wi_1.weight, self.wo.weight,
                                               self.activation, self._p())
        return gated_feedforward(x, self.wi_0.weight, self.wi_1.weight, self.wo.weight, self.activation, self._p(),
                                 seed)
