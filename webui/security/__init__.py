"""Security at the edges: who the caller is, which hosts and origins may talk to the server, limits on requests.

``SecurityPolicy`` (policy.py) is what app.py builds from the flags;
``SecurityMiddleware`` (middleware.py) applies it to every HTTP request before
the API or gradio sees it; ``caller_of`` tells a route or a UI handler the
identity the middleware established. Nothing here imports gradio.
"""
from webui.security.identity import OWNER_HEADER, Identity, caller_from_headers
from webui.security.policy import SecurityPolicy

__all__ = ["OWNER_HEADER", "Identity", "SecurityPolicy", "caller_from_headers"]
