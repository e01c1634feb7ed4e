from __future__ import annotations

from medt_monai.networks.convert import convert_authors_state_dict, load_authors_checkpoint
from medt_monai.networks.gates import gate_values, set_gates_trainable
from medt_monai.networks.performance import set_memory_lean
from medt_monai.networks.registry import NETWORKS, REMOVED_NAMES, NetworkSpec, get_network, network_and_arguments
