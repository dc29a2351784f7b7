"""sd-webui-controlnet's API: its ``/controlnet/*`` routes and its units in ``alwayson_scripts``.

Units are checked at submission (bad values, unknown models or preprocessors are
a 422 naming the field) and their base64 images decoded once; the engine gets
them as ``alwayson_scripts.controlnet.args`` with PIL images.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from webui.api.jobs_bridge import await_job, caller_of
from webui.controlnet import UNIT_COUNT, find_controlnet_args, parse_units
from webui.controlnet.preprocessors import CONTROL_TYPE_WORDS, CONTROL_TYPES, MODULES, find_module, module_details, \
    needs_network, run_module
from webui.controlnet.units import FIELD_NAMES
from webui.schemas import DETECT_JOB_KIND, DetectRequest, InvalidRequest, NotFound, image_to_base64

API_VERSION = 2  # what the extension's /controlnet/version answers today


def normalise_controlnet(alwayson_scripts: dict, services) -> dict:
    """``alwayson_scripts`` with the ControlNet units checked and their images decoded (422 on bad units)."""
    from webui.api.convert import decode_image

    found = find_controlnet_args(alwayson_scripts)
    if found is None:
        return alwayson_scripts
    title, args = found
    max_pixels = services.settings.max_image_pixels
    units, _ = parse_units(args, lambda value, where: decode_image(value, where, max_pixels))
    normalised = []
    for index, (raw, unit) in enumerate(zip(args, units)):
        where = f"alwayson_scripts.controlnet.args[{index}]"
        if unit.enabled:
            try:
                find_module(unit.module)
            except InvalidRequest as exc:
                raise InvalidRequest(str(exc), field=f"{where}.module") from None
            if unit.active:
                try:
                    services.catalog.find_controlnet(unit.model)
                except NotFound as exc:
                    raise InvalidRequest(str(exc), field=f"{where}.model") from None
        # Fields the extension has but this server does not use stay, so the engine warns about them.
        extra = {k: v for k, v in raw.items() if k not in FIELD_NAMES and k not in ("input_image", "mask_image")}
        normalised.append({**extra, **unit.to_dict()})
    scripts = {k: v for k, v in alwayson_scripts.items() if k != title}
    scripts["controlnet"] = {"args": normalised}
    return scripts


class DetectBody(BaseModel):
    """``POST /controlnet/detect`` as the extension takes it."""

    controlnet_module: str = "none"
    controlnet_input_images: list[str] = Field(default_factory=list)
    controlnet_images: list[str] = Field(default_factory=list)  # the name the webuiapi client sends
    controlnet_masks: list[str] = Field(default_factory=list)
    controlnet_processor_res: int = 512
    controlnet_threshold_a: float = 64
    controlnet_threshold_b: float = 64
    low_vram: bool = False


def model_titles(catalog) -> list[str]:
    """The ControlNet files as the extension lists them, ``name [hash8]``."""
    return [info.title for info in catalog.controlnets()]


def control_types(catalog) -> dict[str, dict[str, Any]]:
    """The extension's control types: each one's preprocessors and models (by file name words)."""
    titles = model_titles(catalog)
    result = {}
    for kind in CONTROL_TYPES:
        modules = [m.name for m in MODULES if kind == "All" or m.control_type == kind]
        words = CONTROL_TYPE_WORDS.get(kind)
        models = [t for t in titles if words is None or any(w in t.lower() for w in words)]
        if kind != "All":
            modules = ["none", *[m for m in modules if m != "none"]]
        result[kind] = {"module_list": modules, "model_list": ["None", *models],
                        "default_option": modules[1] if len(modules) > 1 and kind != "All" else "none",
                        "default_model": models[0] if models and kind != "All" else "None"}
    return result


def create_controlnet_router(services) -> APIRouter:
    """``/controlnet/version``, ``model_list``, ``module_list``, ``control_types``, ``settings``, ``detect``."""
    router = APIRouter(prefix="/controlnet", tags=["controlnet"])
    catalog = services.catalog

    @router.get("/version")
    def version() -> dict:
        return {"version": API_VERSION}

    @router.get("/model_list")
    def model_list(update: bool = Query(True)) -> dict:
        if update:
            catalog.refresh_controlnets()
        return {"model_list": model_titles(catalog)}

    @router.get("/module_list")
    def module_list(alias_names: bool = Query(False)) -> dict:
        names = [m.name for m in MODULES]
        return {"module_list": names, "module_detail": {m.name: module_details(m) for m in MODULES}}

    @router.get("/control_types")
    def types() -> dict:
        return {"control_types": control_types(catalog)}

    @router.get("/settings")
    def settings() -> dict:
        return {"control_net_unit_count": UNIT_COUNT}

    @router.post("/detect")
    async def detect(body: DetectBody, http: Request) -> dict:
        """The preprocessor's control image of each input; network preprocessors run as a queued job."""
        from webui.api.convert import decode_image

        inputs = body.controlnet_input_images or body.controlnet_images
        if not inputs:
            raise InvalidRequest("controlnet_input_images is empty: send at least one base64 image",
                                 field="controlnet_input_images")
        try:
            network = needs_network(body.controlnet_module)
        except InvalidRequest as exc:
            raise InvalidRequest(str(exc), field="controlnet_module") from None

        def decoded() -> list:
            return [decode_image(text, f"controlnet_input_images[{index}]", services.settings.max_image_pixels)
                    for index, text in enumerate(inputs)]

        images = await run_in_threadpool(decoded)
        settings = (body.controlnet_processor_res, body.controlnet_threshold_a, body.controlnet_threshold_b)
        if network:  # only the worker holds model weights
            request = DetectRequest(module=body.controlnet_module, images=images, processor_res=settings[0],
                                    threshold_a=settings[1], threshold_b=settings[2])
            try:
                result = await await_job(services.queue, DETECT_JOB_KIND, request, caller_of(http).owner)
            except InvalidRequest as exc:
                raise InvalidRequest(str(exc), field="controlnet_module") from None
            detected = list(result.images)
        else:
            detected = await run_in_threadpool(lambda: [run_module(body.controlnet_module, image, *settings)
                                                        for image in images])
        encoded = await run_in_threadpool(lambda: [image_to_base64(image) for image in detected])
        return {"images": encoded, "info": "Success"}

    return router
