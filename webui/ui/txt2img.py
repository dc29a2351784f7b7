"""The txt2img tab: prompt, sampling parameters, hires fix, gallery."""
from webui.ui.generation import GenerationTab, build_generation_tab


def build_txt2img_tab(services, checkpoint) -> GenerationTab:
    """Build the tab's widgets (inside a gr.Tab) and wire Generate to a txt2img job."""
    return build_generation_tab("txt2img", services, checkpoint, hires=True)
