"""Just-in-time compilation of the fused CPU axial-attention kernel (``axial_attention_cpu.cpp``).

The kernel is built once per machine type and torch version with :func:`torch.utils.cpp_extension.load` (a C++17
compiler and ninja are needed; the ``ninja`` wheel is a dependency) and cached in ``TORCH_EXTENSIONS_DIR``
(default ``~/.cache/torch_extensions``): the first use compiles it, later uses load the cached build.
When it cannot be built, MedT falls back to the PyTorch implementation of the same mathematics (slower on CPU) with
one warning. ``MEDT_MONAI_CPU_KERNEL=0`` switches the kernel off.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import warnings
from pathlib import Path

import torch

__all__ = ["cpu_attention_available", "ENV_SWITCH"]

#: environment variable: ``0`` disables the compiled CPU kernel (the PyTorch implementation is used).
ENV_SWITCH = "MEDT_MONAI_CPU_KERNEL"

_SOURCE = Path(__file__).with_name("axial_attention_cpu.cpp")
# Instruction sets per ATen CPU capability: the build is named after the capability, so a cache directory shared by
# machines of different CPU generations never hands one an instruction it lacks.
_ISA_FLAGS = {"AVX512": ["-mavx512f", "-mavx512dq", "-mavx2", "-mfma"], "AVX2": ["-mavx2", "-mfma"]}
_lock = threading.Lock()
_loaded: bool | None = None


def _build() -> None:
    from torch.utils.cpp_extension import load

    if shutil.which("ninja") is None:
        # the ninja wheel's binary sits in the environment's bin folder, which is not on PATH unless it is activated
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    capability = torch.backends.cpu.get_cpu_capability()
    load(
        name=re.sub(r"\W", "_", f"medt_monai_attention_{torch.__version__}_{capability}"),
        sources=[str(_SOURCE)],
        extra_cflags=["-O3", "-fopenmp", *_ISA_FLAGS.get(capability, [])],
        extra_ldflags=["-fopenmp"],
        is_python_module=False,
        verbose=False,
    )


@torch.compiler.assume_constant_result  # torch.compile: decided once when tracing, not traced into
def cpu_attention_available() -> bool:
    """Whether the ``torch.ops.medt_monai.axial_attention_*`` operators can be used; builds them on the first call.

    Returns False (after one warning naming the reason) when the build fails, and without building when the
    environment variable :data:`ENV_SWITCH` is ``0``.
    """
    global _loaded
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if _loaded is None:
        with _lock:
            if _loaded is None:
                try:
                    _build()
                    from medt_monai._extensions import ops

                    ops.register()
                    _loaded = True
                except Exception as error:  # no compiler, no ninja, read-only cache, ...
                    warnings.warn(
                        f"medt_monai: could not build the fused CPU attention kernel from {_SOURCE} ({error}); using "
                        f"the slower PyTorch implementation of the same attention. Set {ENV_SWITCH}=0 to skip the "
                        "build.",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    _loaded = False
    return _loaded
