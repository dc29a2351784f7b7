# The web UI in a container, for NVIDIA GPUs.
#
# Base: the plain Python 3.11 image, not nvidia/cuda. torch's Linux wheels bring their own
# CUDA runtime, cuDNN and cuBLAS as pip packages, so a CUDA base image would only add a second,
# unused copy; the host needs just the NVIDIA driver and the NVIDIA Container Toolkit.
# Build for an older driver with: docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
FROM python:3.11.11-slim-bookworm

ARG TORCH_INDEX_URL=""
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VENV_DIR=/opt/venv \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    GRADIO_ANALYTICS_ENABLED=False

# Runs as an unprivileged user that owns only the venv and the two data folders.
RUN groupadd --gid 1000 webui \
    && useradd --create-home --no-log-init --uid 1000 --gid 1000 webui \
    && mkdir -p /opt/venv /app/models /app/outputs \
    && chown webui:webui /opt/venv /app /app/models /app/outputs
USER 1000:1000
WORKDIR /app

# Dependencies first, through the same launcher as on a desktop: this layer is rebuilt only when
# the requirements (or the launcher) change.
COPY --chown=webui:webui launch.py requirements.txt requirements-nodeps.txt ./
COPY --chown=webui:webui webui/__init__.py webui/__init__.py
COPY --chown=webui:webui webui/launcher webui/launcher
RUN python launch.py --prepare-only

# The app; the second set-up installs nothing (same requirements) and converts the Real-ESRGAN weights
# into models/, which seeds the models volume the first time it is used.
COPY --chown=webui:webui . .
RUN python launch.py --prepare-only

VOLUME ["/app/models", "/app/outputs"]
EXPOSE 7860
# The launcher, listening on 0.0.0.0, with the login from WEBUI_AUTH (required): see docker/entrypoint.sh.
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD []
