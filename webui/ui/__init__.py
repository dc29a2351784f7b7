"""The gradio web UI: the only package that imports gradio (one module per tab).

``build_ui(services)`` returns the page as a ``gradio.Blocks``; ``mount_ui(app,
services)`` mounts it on the FastAPI app at "/" with the page's CSS. gradio is
imported only when one of them is called.
"""


def build_ui(services):
    """The whole web UI for a Services bundle, as a gradio.Blocks."""
    from webui.ui.layout import build_ui as build

    return build(services)


def mount_ui(app, services, path: str = "/"):
    """Build the UI and mount it on a FastAPI app at ``path``; returns the app."""
    from webui.ui.layout import mount_ui as mount

    return mount(app, services, path)
