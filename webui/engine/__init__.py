"""The engine: one denoising loop for txt2img, img2img and inpaint; no threads, no UI, no HTTP."""
