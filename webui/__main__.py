"""``python -m webui``: the same as ``python launch.py``."""
import sys

from webui.launcher.main import main

if __name__ == "__main__":
    sys.exit(main())
