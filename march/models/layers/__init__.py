"""Drop-in ``nn.Module`` layers backed by march's fused kernels, state_dict-compatible with HF T5.

Every layer takes ``kernels="auto" | "triton" | "eager"``: "triton" uses the fused ops, "eager" the
references in ``march.kernels.reference``, "auto" the fused ops where they can run (CUDA tensors, or
any tensor under TRITON_INTERPRET=1) and the references elsewhere.
"""

from march.models.layers.attention import T5Attention
from march.models.layers.feedforward import FeedForward, GatedFeedForward
from march.models.layers.norm import RMSNorm

__all__ = ["RMSNorm", "FeedForward", "GatedFeedForward", "T5Attention"]
