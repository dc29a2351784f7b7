"""Pydantic models of each script's named fields, built from its typed Params, so OpenAPI documents them.

``script_args`` takes A1111's positional list or one of these objects
(``{"x_type": "Steps", "x_values": "10-30 (+10)"}``); unknown fields are refused.
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, WithJsonSchema, create_model

from webui.addons.base import Param
from webui.scripts.registry import SCRIPTS

# Fields that take A1111's index into a list or the item's name.
INDEX_OR_NAME = {"x_type", "y_type", "z_type", "upscaler_index"}


def _field(param: Param) -> tuple[Any, Any]:
    kind: Any = int | str if param.name in INDEX_OR_NAME else type(param.default)
    if kind is list:
        kind = list[str]
    described = param.label + (f" (one of: {', '.join(param.choices)})" if param.choices else "")
    default = list(param.default) if isinstance(param.default, list) else param.default
    return kind, Field(default, description=described, ge=param.minimum, le=param.maximum)


def _model(spec):
    fields = {p.name: _field(p) for p in spec.params}
    name = "".join(part.capitalize() for part in spec.key.split("_")) + "Args"
    return create_model(name, __config__=ConfigDict(extra="forbid", title=f"{spec.title} args"),
                        __doc__=f"{spec.title}: named fields, A1111's positional order.", **fields)


SCRIPT_ARG_MODELS = tuple(_model(spec) for spec in SCRIPTS)
# Validated by the script itself (so a 422 names ``script_args`` and the script's own fields); documented in
# OpenAPI as the positional list or one of the scripts' objects.
ScriptArgs = Annotated[list | dict, WithJsonSchema({
    "anyOf": [{"type": "array", "items": {}, "title": "A1111's positional args"},
              *(model.model_json_schema() for model in SCRIPT_ARG_MODELS)],
    "description": "The script's args: A1111's positional list, or the script's fields by name",
})]
