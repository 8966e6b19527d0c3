"""Build the cost model a config asks for: roofline (datasheet) or profiled (measured table + roofline fallback)."""
from __future__ import annotations

import importlib

from hwmodels.config import CostModelConfig, HardwareConfig, ParallelConfig, QuantConfig, RooflineCostConfig
from hwmodels.cost import CostModel
from hwmodels.errors import UserError
from hwmodels.hardware import GPUSpec
from hwmodels.models import ModelSpec
from hwmodels.roofline import RooflineCostModel


def build_cost_model(model: ModelSpec, gpu: GPUSpec, parallel: ParallelConfig, quant: QuantConfig,
                     hardware: HardwareConfig = HardwareConfig(),
                     cost_cfg: CostModelConfig = RooflineCostConfig()) -> CostModel:
    """RooflineCostModel for kind 'roofline'; hwmodels.profiled.ProfiledCostModel for kind 'profiled'."""
    if cost_cfg.kind == "roofline":
        return RooflineCostModel(model, gpu, parallel, quant, hardware)
    try:
        mod = importlib.import_module("hwmodels.profiled")
    except ModuleNotFoundError as exc:
        if exc.name != "hwmodels.profiled":
            raise
        raise UserError("cost_model.kind = 'profiled': needs hwmodels.profiled.ProfiledCostModel, which is not "
                        "installed in this build; use cost_model.kind = 'roofline'") from None
    return mod.ProfiledCostModel(cost_cfg.profile, model, gpu, parallel, quant, hardware)
