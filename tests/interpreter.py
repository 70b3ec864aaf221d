"""Fixes for the Triton CPU interpreter's bf16 handling (see ../shared/MACHINES.md), shared by the
test and benchmark conftests."""


def _widen_bf16_dots() -> None:
    """The interpreter multiplies bf16 operands as raw uint16 bit patterns (silently wrong).
    Widen them to fp32 first: a bf16's bits shifted left by 16 are the same number's fp32 bits."""
    import numpy as np
    import triton.language as tl
    from triton.runtime.interpreter import InterpreterBuilder, TensorHandle

    original = InterpreterBuilder.create_dot
    if getattr(original, "_march_widened", False):
        return

    def widen(h):
        if h.dtype.scalar == tl.bfloat16:
            return TensorHandle((h.data.astype(np.uint32) << 16).view(np.float32), tl.float32)
        return h

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        return original(self, widen(a), widen(b), d, input_precision, max_num_imprecise_acc)

    create_dot._march_widened = True
    InterpreterBuilder.create_dot = create_dot


def _round_bf16_casts() -> None:
    """The interpreter narrows fp32 to bf16 by truncation; the GPU rounds to nearest even.
    Round like the GPU so that bf16 results can be compared bit for bit with eager PyTorch."""
    import numpy as np
    import triton.language as tl
    from triton.runtime.interpreter import InterpreterBuilder, TensorHandle

    if getattr(InterpreterBuilder.cast_impl, "_march_rne", False):
        return

    def to_bf16(data):
        u = np.ascontiguousarray(data, dtype=np.float32).view(np.uint32).astype(np.uint64)
        rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        nan = np.isnan(np.asarray(data, dtype=np.float32))
        return np.where(nan, np.uint16(0x7FC0), rounded)

    def wrap(original):
        def cast(self, src, dst_type, *rest):
            if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
                return TensorHandle(to_bf16(src.data), tl.bfloat16)
            return original(self, src, dst_type, *rest)

        cast._march_rne = True
        return cast

    InterpreterBuilder.cast_impl = wrap(InterpreterBuilder.cast_impl)
    InterpreterBuilder.create_fp_trunc = InterpreterBuilder.cast_impl
    InterpreterBuilder.create_fp_to_fp = wrap(InterpreterBuilder.create_fp_to_fp)


def patch_interpreter() -> None:
    """Make the Triton interpreter compute bf16 like the GPU (both fixes are idempotent)."""
    _widen_bf16_dots()
    _round_bf16_casts()
