from .flip import FlipInferer

__all__ = ["FlipInferer"]
