from __future__ import annotations

from medt_monai.networks.nets.axial_unet import AxialUNet, GatedAxialUNet
from medt_monai.networks.nets.medt import LoGo, MedT, medt_arguments_of
from medt_monai.networks.nets.unetpp import UNetPlusPlus
