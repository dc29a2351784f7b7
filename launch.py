#!/usr/bin/env python3
"""Set up .venv for this machine (once) and start the web UI; flags pass through to app.py.

Runs on the system Python with the standard library only. ``python launch.py --help``.
"""
import sys

from webui.launcher.main import main

if __name__ == "__main__":
    sys.exit(main())
