"""Fused Triton kernels with eager references (``march.kernels.reference``)."""

from march.kernels.rms_norm import add_rms_norm, rms_norm
from march.kernels.glu import act_dropout, activation, glu
from march.kernels.cross_entropy import cross_entropy
from march.kernels.feedforward import feedforward, gated_feedforward
from march.kernels.t5_attention import t5_attention
from march.kernels.t5_attention_packed import t5_attention_kvpacked, t5_attention_qkvpacked

__all__ = ["rms_norm", "add_rms_norm", "glu", "act_dropout", "activation", "gated_feedforward", "feedforward",
           "t5_attention", "t5_attention_qkvpacked", "t5_attention_kvpacked", "cross_entropy"]
