"""ControlNet as sd-webui-controlnet has it: units, preprocessors, infotext (pure Python and PIL).

The engine runs the units in its own denoising loop (``webui.engine.controlnet``);
ControlNet files are read by ``webui.models.controlnet``.
"""
from webui.controlnet.units import (
    CONTROL_MODES, RESIZE_MODES, UNIT_COUNT, ControlUnit, find_controlnet_args, parse_unit, parse_units,
    units_from_infotext, units_infotext, with_mask_as_input,
)

__all__ = ["CONTROL_MODES", "RESIZE_MODES", "UNIT_COUNT", "ControlUnit", "find_controlnet_args", "parse_unit",
           "parse_units", "units_from_infotext", "units_infotext", "with_mask_as_input"]
