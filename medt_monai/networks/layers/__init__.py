from __future__ import annotations

from medt_monai.networks.layers.axial_attention import (
    CHUNK_LOGITS,
    apply_value_affine,
    attend,
    attend_lines,
    attend_qkv,
    fused_kernel_applies,
    line_statistics,
    position_moments,
    product_moments,
    qkv_lines,
    relative_embeddings,
)
from medt_monai.networks.layers.batch_norm import (
    Moments,
    batch_norm_affine,
    batch_norm_affine_from_moments,
    gated_batch_norm,
)
