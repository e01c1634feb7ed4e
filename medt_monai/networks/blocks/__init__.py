from __future__ import annotations

from medt_monai.networks.blocks.axial_attention import (
    ATTENTION_KINDS,
    GATE_PLACEMENTS,
    AttentionLayer,
    AxialAttention,
    axial_attention_layer,
)
from medt_monai.networks.blocks.axial_block import AxialBlock, AxialStage
from medt_monai.networks.blocks.conv_norm import ConvNorm
from medt_monai.networks.blocks.encoder_decoder import AxialEncoderDecoder, ConvStem, DecoderStep, conv_bn_relu
