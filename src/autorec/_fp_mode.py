"""The floating-point mode of the compiled kernels' threads (imported with Numba, by
:func:`autorec._kernel_source.compile_kernels` only).

Float32 values below 1.2e-38 (subnormals, such as the sigmoid code of a unit driven below
-87) cost Intel cores a microcode assist for each vector instruction that meets one, which
slowed the decoder kernel inside a fit several times (BENCHMARKS.md, issue 15). So each
kernel call, on each of its threads, sets the CPU to treat
such values as zero (MXCSR's flush-to-zero and denormals-are-zero bits) and puts the
thread's own mode back at the end: torch and the caller never see the change. A term that
would be subnormal becomes 0, which moves a sum of ratings' terms by less than 1e-38. On a
CPU without MXCSR (not x86) both functions do nothing.

They are module globals, not closure cells of the kernels, so that Numba's disk cache finds
the kernels again in the next process.
"""

from __future__ import annotations

import platform
from typing import Any

import numba

__all__ = ["flush_denormals", "restore_fp_mode"]

#: MXCSR's flush-to-zero (results) and denormals-are-zero (inputs) bits.
FTZ_DAZ = 0x8040

X86 = platform.machine().lower() in {"x86_64", "amd64", "i386", "i686"}

if X86:
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    _I32 = ir.IntType(32)

    def _mxcsr(builder: Any, instruction: str, slot: Any) -> None:
        """Emit ``stmxcsr`` / ``ldmxcsr`` on the 32-bit ``slot``."""
        byte_ptr = ir.IntType(8).as_pointer()
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr]),
            f"llvm.x86.sse.{instruction}")
        builder.call(fn, [builder.bitcast(slot, byte_ptr)])

    @intrinsic
    def flush_denormals(typingctx: Any) -> Any:
        """Set this thread's FTZ and DAZ bits; return its mode before."""
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            before, after = cgutils.alloca_once(builder, _I32), cgutils.alloca_once(builder, _I32)
            _mxcsr(builder, "stmxcsr", before)
            mode = builder.load(before)
            builder.store(builder.or_(mode, ir.Constant(_I32, FTZ_DAZ)), after)
            _mxcsr(builder, "ldmxcsr", after)
            return mode

        return types.uint32(), codegen

    @intrinsic
    def restore_fp_mode(typingctx: Any, mode: Any) -> Any:
        """Put back the mode :func:`flush_denormals` returned."""
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            slot = cgutils.alloca_once(builder, _I32)
            builder.store(args[0], slot)
            _mxcsr(builder, "ldmxcsr", slot)
            return context.get_dummy_value()

        return types.void(types.uint32), codegen

else:  # pragma: no cover - no MXCSR: the CPU's own mode stands

    @numba.njit(inline="always")
    def flush_denormals() -> int:
        return 0

    @numba.njit(inline="always")
    def restore_fp_mode(mode: int) -> None:
        pass
