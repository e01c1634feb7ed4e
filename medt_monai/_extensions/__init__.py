"""C++ kernels compiled on first use (as MONAI's own ``monai._extensions``), with a pure-PyTorch fallback."""

from medt_monai._extensions.loader import cpu_attention_available

__all__ = ["cpu_attention_available"]
