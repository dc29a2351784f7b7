"""The launcher: set up ``.venv`` with the right torch for this machine, then start ``app.py``.

Standard library only: it runs on the system Python before the virtualenv exists.
``launch.py`` (and ``python -m webui``) call :func:`webui.launcher.main.main`.
"""
