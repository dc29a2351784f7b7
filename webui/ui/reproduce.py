"""PNG Info's Reproduce button: run the image's parameters again and show the new image beside the difference."""
from __future__ import annotations

import html
from typing import Iterator

from PIL import Image

from webui.jobs.follow import job_updates
from webui.ui import common


def summary(difference, unmet: list[str], warnings: list[str]) -> str:
    """Markdown: the pixel difference, then every field that was not honoured and the job's warnings."""
    verdict = "identical" if difference.max == 0 else "different"
    lines = [f"**Difference:** mean {difference.mean_abs:.3f}, max {difference.max} levels of 255 ({verdict})"]
    if not difference.same_size:
        lines.append("- the new image has another size than the original")
    if unmet:
        lines.append("**Not honoured:**")
        lines += [f"- {html.escape(item)}" for item in unmet]
    else:
        lines.append("Every recorded field was honoured.")
    lines += [f"- warning: {html.escape(item)}" for item in warnings]
    return "\n".join(lines)


def reproduce(services, path, owner: str) -> Iterator[tuple[str, Image.Image | None, Image.Image | None]]:
    """Yield (status markdown, new image, difference image) while the reproduction runs, then its outcome."""
    from webui.vocabulary import VERSION
    from webui.images import read_infotext
    from webui.reproduce import pixel_difference, plan_reproduction

    if not path:
        yield "**Error:** drop an image with generation parameters first", None, None
        return
    try:
        with Image.open(path) as opened:
            opened.load()
            original = opened.copy()
            text = read_infotext(opened)
        plan = plan_reproduction(text, services.catalog, version=VERSION)
        job = services.queue.submit("txt2img", plan.request, owner=owner)
    except Exception as exc:
        yield f"**Error:** {common.readable_error(exc)}", None, None
        return
    for job in job_updates(services.queue, job.id):  # woken by the queue, no polling
        if not common.job_finished(job):
            yield f"Reproducing: {common.progress_text(job)}", None, None
    result = getattr(job, "result", None)
    if not getattr(result, "images", None):
        yield f"**Error:** the reproduction made no image ({common.progress_text(job)})", None, None
        return
    difference, picture = pixel_difference(original, result.images[0])
    yield summary(difference, plan.unmet, list(result.warnings)), result.images[0], picture
