"""The schedule core: pure numpy (importing it never imports torch)."""

from nas_dil.schedule.analyze import analyze
from nas_dil.schedule.batch import (
    BatchHDC,
    BatchScores,
    batch_hdc,
    batch_holes_1d,
    batch_m,
    batch_rf,
    score_batch,
)
from nas_dil.schedule.cost import Cost, conv_cost, conv_out_size, stack_cost
from nas_dil.schedule.coverage import (
    Coverage,
    count_map_2d,
    counts_1d,
    coverage,
    layer_taps,
    support_1d,
)
from nas_dil.schedule.hdc import HDCReport, RuleVerdict, hdc_report, m_values, sawtooth_groups
from nas_dil.schedule.netcost import (
    BatchNetCost,
    LayerCost,
    NetCost,
    StemStage,
    batch_net_cost,
    image_schedule,
    net_cost,
    stem_plan,
)
from nas_dil.schedule.rf import (
    effective_rates,
    jumps,
    receptive_field,
    rf_in_image,
    rf_per_layer,
    total_stride,
)
from nas_dil.schedule.types import Schedule, ScheduleError, parse_ints

__all__ = [
    "BatchHDC",
    "BatchNetCost",
    "BatchScores",
    "Cost",
    "Coverage",
    "HDCReport",
    "LayerCost",
    "NetCost",
    "RuleVerdict",
    "Schedule",
    "ScheduleError",
    "StemStage",
    "analyze",
    "batch_hdc",
    "batch_holes_1d",
    "batch_m",
    "batch_net_cost",
    "batch_rf",
    "conv_cost",
    "conv_out_size",
    "count_map_2d",
    "counts_1d",
    "coverage",
    "effective_rates",
    "hdc_report",
    "image_schedule",
    "jumps",
    "layer_taps",
    "m_values",
    "net_cost",
    "parse_ints",
    "receptive_field",
    "rf_in_image",
    "rf_per_layer",
    "sawtooth_groups",
    "score_batch",
    "stack_cost",
    "stem_plan",
    "support_1d",
    "total_stride",
]
