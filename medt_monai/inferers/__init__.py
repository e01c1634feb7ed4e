from .flip import FlipInferer, tta_inferer

__all__ = ["FlipInferer", "tta_inferer"]
