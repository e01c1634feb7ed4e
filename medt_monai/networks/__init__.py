from __future__ import annotations

from medt_monai.networks.gates import gate_values, set_gates_trainable
from medt_monai.networks.performance import set_memory_lean
