"""A1111's samplers and schedule types, written from the k-diffusion algorithms.

``denoiser`` wraps a model's discrete training schedule (sigmas, timesteps,
eps/v scalings), ``schedules`` makes sigma schedules, ``ksamplers`` and
``timesteps`` are the sampling algorithms, and ``webui.vocabulary`` names them as
A1111 does. Nothing here imports the UNet or any UI code: a sampler only sees a
``denoise(x, sigma)`` function.
"""
