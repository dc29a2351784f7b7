"""The Settings tab: option widgets listed from a table, applied through the same options store as the API.

Each row of ``SECTIONS`` names an option (A1111's key), its label and its widget;
"Apply settings" validates and stores the changed values (the store writes
``config.json`` under the output folder, so they persist across restarts).
More sections are added by adding rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from webui.ui import common
from webui.vocabulary import MEMORY_OFFLOAD_CHOICES, PREVIEW_TYPES

FORMAT_CHOICES = ["png", "jpg", "webp"]
PATTERN_HELP = "Tags: [seed], [prompt_spaces], [prompt_words], [model_name], [date], [datetime<%Y%m%d>] ..."


@dataclass(frozen=True)
class OptionRow:
    """One option on the page: key, label, widget kind ("check", "text", "choice", "number", "float", "list")
    and its limits."""

    key: str
    label: str
    kind: str = "text"
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    info: str | None = None


SECTIONS: dict[str, list[OptionRow]] = {
    "Saving images": [
        OptionRow("samples_save", "Always save all generated images", "check"),
        OptionRow("samples_format", "File format for images", "choice", tuple(FORMAT_CHOICES)),
        OptionRow("samples_filename_pattern", "Images filename pattern", info=PATTERN_HELP + " (empty: [seed])"),
        OptionRow("save_images_add_number", "Add number to filename when saving", "check"),
        OptionRow("grid_save", "Always save all generated image grids", "check"),
        OptionRow("grid_format", "File format for grids", "choice", tuple(FORMAT_CHOICES)),
        OptionRow("grid_extended_filename", "Add extended info (seed, prompt) to filename when saving grid", "check"),
        OptionRow("grid_only_if_multiple", "Do not save grids consisting of one picture", "check"),
        OptionRow("grid_prevent_empty_spots", "Prevent empty spots in grid (when set to autodetect)", "check"),
        OptionRow("n_rows", "Grid row count; use -1 for autodetect and 0 for it to be same as batch size", "number",
                  minimum=-1, maximum=16),
        OptionRow("grid_background_color", "Background color for image grids"),
        OptionRow("save_txt", "Create a text file with infotext next to every image", "check"),
        OptionRow("jpeg_quality", "Quality for saved jpeg and webp images", "number", minimum=1, maximum=100),
        OptionRow("webp_lossless", "Use lossless compression for webp images", "check"),
    ],
    "Saving to a directory": [
        OptionRow("save_to_dirs", "Save images to a subdirectory", "check"),
        OptionRow("grid_save_to_dirs", "Save grids to a subdirectory", "check"),
        OptionRow("directories_filename_pattern", "Directory name pattern", info=PATTERN_HELP + " (empty: [date])"),
        OptionRow("directories_max_prompt_words", "Max prompt words for [prompt_words] pattern", "number",
                  minimum=1, maximum=20),
    ],
    "Upscaling": [
        OptionRow("ESRGAN_tile", "Tile size for ESRGAN upscalers (0 = no tiling)", "number", minimum=0, maximum=512),
        OptionRow("ESRGAN_tile_overlap", "Tile overlap for ESRGAN upscalers (pixels)", "number", minimum=0,
                  maximum=256),
        OptionRow("upscaler_for_img2img", "Upscaler for img2img",
                  info="Enlarges an init image smaller than the target (an upscaler's name; Lanczos: none)"),
    ],
    "Extra Networks": [
        OptionRow("sd_lora", "Add network to prompt", info="A LoRA's name added to every prompt; None: off"),
        OptionRow("extra_networks_default_multiplier", "Default multiplier for extra networks", "float",
                  minimum=0, maximum=2),
    ],
    "Stable Diffusion": [
        OptionRow("CLIP_stop_at_last_layers", "Clip skip (the tabs' Clip skip starts at this value)", "number",
                  minimum=1, maximum=12),
    ],
    "Sampler parameters": [
        OptionRow("eta_ancestral", "Eta for k-diffusion samplers (noise multiplier; ancestral samplers)", "float",
                  minimum=0, maximum=1),
        OptionRow("eta_ddim", "Eta for DDIM (noise multiplier)", "float", minimum=0, maximum=1),
        OptionRow("s_churn", "sigma churn", "float", minimum=0, maximum=100),
        OptionRow("s_tmin", "sigma tmin", "float", minimum=0, maximum=10),
        OptionRow("s_tmax", "sigma tmax (0 = infinity)", "float", minimum=0, maximum=999),
        OptionRow("s_noise", "sigma noise", "float", minimum=0, maximum=1.1),
        OptionRow("s_min_uncond", "Negative Guidance minimum sigma (NGMS; 0 = off)", "float", minimum=0, maximum=15),
        OptionRow("sigma_min", "sigma min (0 = the model's)", "float", minimum=0, maximum=10),
        OptionRow("sigma_max", "sigma max (0 = the model's)", "float", minimum=0, maximum=100),
        OptionRow("rho", "rho (0 = the schedule's default)", "float", minimum=0, maximum=10),
        OptionRow("always_discard_next_to_last_sigma", "Always discard next-to-last sigma", "check"),
        OptionRow("sgm_noise_multiplier", "SGM noise multiplier", "check"),
        OptionRow("beta_dist_alpha", "Beta scheduler - alpha", "float", minimum=0.01, maximum=1),
        OptionRow("beta_dist_beta", "Beta scheduler - beta", "float", minimum=0.01, maximum=1),
        OptionRow("uni_pc_variant", "UniPC variant", "choice", ("bh1", "bh2", "vary_coeff")),
        OptionRow("uni_pc_skip_type", "UniPC skip type", "choice", ("time_uniform", "time_quadratic", "logSNR")),
        OptionRow("uni_pc_order", "UniPC order", "number", minimum=1, maximum=50),
        OptionRow("uni_pc_lower_order_final", "UniPC lower order final", "check"),
        OptionRow("img2img_fix_steps", "With img2img, do exactly the amount of steps the slider specifies", "check"),
        OptionRow("cfg_rescale_phi", "CFG Rescale phi (v-prediction models; 0 = off)", "float", minimum=0, maximum=1),
    ],
    "Random number generator": [
        OptionRow("randn_source", "Random number generator source", "choice", ("GPU", "CPU", "NV"),
                  info="GPU: the same image on every device as on an NVIDIA card; CPU: torch's CPU generator"),
        OptionRow("eta_noise_seed_delta", "Eta noise seed delta (ENSD)", "number", minimum=0, maximum=2**31 - 1),
    ],
    "Live previews": [
        OptionRow("live_previews_enable", "Show live previews of the created image", "check"),
        OptionRow("show_progress_every_n_steps", "Live preview display period (in sampling steps; 0 = none)",
                  "number", minimum=0, maximum=32),
        OptionRow("show_progress_type", "Live preview method", "choice", PREVIEW_TYPES,
                  info="Approx cheap: a colour map, one pixel per latent pixel; TAESD: a small learned decoder "
                       "from models/VAE-approx (full size); Full: the model's own VAE (slow)"),
    ],
    "VAE": [
        OptionRow("vae_tiling_min_pixels", "Decode and encode in tiles above this many pixels (0 = never)", "number",
                  minimum=0, maximum=64 * 1024 * 1024),
        OptionRow("vae_tile_size", "VAE tile size (image pixels)", "number", minimum=64, maximum=4096),
    ],
    "Memory": [
        OptionRow("memory_offload", "Where the weights live on a GPU", "choice", tuple(MEMORY_OFFLOAD_CHOICES),
                  info="Automatic: each job's plan is chosen from the free memory and what the job needs, and "
                       "shown with its reasons under the result; Model offload is A1111's --medvram, Sequential "
                       "its --lowvram"),
    ],
    "Speed": [
        OptionRow("torch_compile", "Compile the UNet with torch.compile", "check",
                  info="Graphs are compiled in the background for each new image size: the first images of a "
                       "size run uncompiled, the next ones compiled. Off while weights are offloaded"),
    ],
    "User interface": [
        OptionRow("quicksettings_list", "Quicksettings list (option keys shown at the top; applies after a restart)",
                  "list"),
        OptionRow("cpu_confirm_pixel_steps", "On a CPU, ask before jobs above this many pixels x steps (0 = never)",
                  "number", minimum=0, maximum=2**40),
    ],
    "Paths for saving (folders inside the output folder)": [
        OptionRow("outdir_samples", "Output directory for images; if empty, defaults to the three below"),
        OptionRow("outdir_txt2img_samples", "Output directory for txt2img images"),
        OptionRow("outdir_img2img_samples", "Output directory for img2img images"),
        OptionRow("outdir_extras_samples", "Output directory for images from extras tab"),
        OptionRow("outdir_grids", "Output directory for grids; if empty, defaults to the two below"),
        OptionRow("outdir_txt2img_grids", "Output directory for txt2img grids"),
        OptionRow("outdir_img2img_grids", "Output directory for img2img grids"),
    ],
    "Notifications": [
        OptionRow("notification_audio", "Play a sound when a job ends (and show a browser notification, if allowed)",
                  "check"),
    ],
}


# Sections shown open; the others are one click away, so the page stays short.
OPEN_SECTIONS = {"Saving images", "Saving to a directory", "Paths for saving (folders inside the output folder)",
                 "Stable Diffusion", "User interface"}


@dataclass
class SettingsTab:
    widgets: dict  # option key -> component
    apply: gr.Button
    message: gr.Markdown
    save_defaults: gr.Button | None = None  # wired by the layout (it knows the tabs' widgets)
    reset_defaults: gr.Button | None = None

    def refresh(self, services) -> list:
        """The widgets' values from the options store (for page load)."""
        return current_values(services.options, list(self.widgets))


def rows() -> list[OptionRow]:
    """Every option row of the page, in order."""
    return [row for section in SECTIONS.values() for row in section]


def current_values(options, keys: list[str]) -> list:
    """The stored value of each key, in order (lists as the comma-separated text their box shows)."""
    values = options.as_dict()
    return [", ".join(values[key]) if isinstance(values.get(key), list) else values.get(key) for key in keys]


def cast_value(row: OptionRow, value):
    """A widget's value as the option's type (lists from comma-separated text)."""
    if row.kind == "check":
        return bool(value)
    if row.kind == "number":
        return int(value) if value is not None and float(value).is_integer() else value
    if row.kind == "float":
        return float(value)
    if row.kind == "choice" and value not in row.choices:
        raise ValueError(f"{row.key} must be one of {', '.join(row.choices)}")
    if row.kind == "list":
        items = value if isinstance(value, list) else str(value or "").split(",")
        return [str(item).strip() for item in items if str(item).strip()]
    return "" if value is None else str(value)


def apply_settings(options, keys: list[str], values: list) -> str:
    """Store the changed values; returns the message shown under the button (errors included, nothing raised)."""
    by_key = {row.key: row for row in rows()}
    stored = options.as_dict()
    try:
        changes = {key: cast_value(by_key[key], value) for key, value in zip(keys, values)}
    except (TypeError, ValueError) as exc:
        return f"Not saved: {exc}"
    changes = {key: value for key, value in changes.items() if stored.get(key) != value}
    if not changes:
        return "Nothing changed."
    try:
        options.update(changes)
    except Exception as exc:  # the store's typed errors name the option
        return f"Not saved: {common.readable_error(exc)}"
    return f"{len(changes)} setting(s) changed: {', '.join(sorted(changes))}."


def option_widget(row: OptionRow, value, elem_id: str | None = None, label: str | None = None):
    """The widget of one option row (call inside a gradio layout); ``label`` replaces the row's own."""
    common_args = {"label": label or row.label, "value": value, "elem_id": elem_id or f"setting_{row.key}"}
    if row.kind == "check":
        return gr.Checkbox(**common_args)
    if row.kind == "choice":
        return gr.Dropdown(choices=list(row.choices), **common_args)
    if row.kind == "number":
        return gr.Number(minimum=row.minimum, maximum=row.maximum, precision=0, info=row.info, **common_args)
    if row.kind == "float":
        return gr.Number(minimum=row.minimum, maximum=row.maximum, info=row.info, **common_args)
    if row.kind == "list":
        return gr.Textbox(info=row.info or "comma-separated", **{**common_args, "value": ", ".join(value or [])})
    return gr.Textbox(info=row.info, **common_args)


def build_settings_tab(services) -> SettingsTab:
    """Build the tab (inside a gr.Tab); the layout refreshes its values on page load."""
    values = services.options.as_dict()
    widgets = {}
    with gr.Row():
        apply = gr.Button("Apply settings", variant="primary", elem_id="settings_submit")
    message = gr.Markdown(elem_id="settings_result")
    for title, section in SECTIONS.items():
        with gr.Accordion(title, open=title in OPEN_SECTIONS):
            for row in section:
                widgets[row.key] = option_widget(row, values.get(row.key))
    with gr.Accordion("Defaults of the generation tabs (ui-config.json)", open=True):
        with gr.Row():
            save_defaults = gr.Button("Save the current txt2img, img2img and inpaint values as defaults",
                                      elem_id="settings_save_ui_defaults")
            reset_defaults = gr.Button("Back to the built-in defaults", elem_id="settings_reset_ui_defaults")
    keys = list(widgets)

    def on_apply(*new_values):
        text = apply_settings(services.options, keys, list(new_values))
        return [text, *current_values(services.options, keys)]

    apply.click(on_apply, inputs=list(widgets.values()), outputs=[message, *widgets.values()],
                show_progress="hidden")
    return SettingsTab(widgets, apply, message, save_defaults, reset_defaults)
