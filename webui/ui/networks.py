"""Extra networks: a LoRA list and a wildcard list that insert their tag into a prompt when clicked."""
from dataclasses import dataclass

import gradio as gr

from webui.ui import common


@dataclass
class NetworksPanel:
    loras: gr.Dataset
    wildcards: gr.Dataset
    refresh: gr.Button
    message: gr.Markdown


def lora_rows(services) -> list[list[str]]:
    """``[name, alias, trigger words]`` for every LoRA in the catalog."""
    try:
        loras = services.catalog.loras()
    except Exception:
        return []
    return [[info.name, info.alias, ", ".join(getattr(info, "trigger_words", [])[:5])] for info in loras]


def wildcard_rows(services) -> list[list[str]]:
    return [[name] for name in common.wildcard_names(services)]


def insert_tag(prompt: str | None, tag: str) -> str:
    """Append ``tag`` to the prompt with A1111's ", " separator (once)."""
    prompt = (prompt or "").rstrip()
    if tag in prompt:
        return prompt
    return f"{prompt}, {tag}" if prompt and not prompt.endswith(",") else f"{prompt} {tag}".strip()


def build_networks_panel(tab: str, services, prompt: gr.Textbox) -> NetworksPanel:
    """Build the panel (inside an accordion) for one tab's prompt box."""
    with gr.Row():
        refresh = gr.Button("🔄 Refresh lists", elem_id=f"{tab}_networks_refresh", size="sm")
        message = gr.Markdown("", elem_id=f"{tab}_networks_message")
    loras = gr.Dataset(label="LoRA (click to add to the prompt)", elem_id=f"{tab}_lora_list",
                       components=["textbox", "textbox", "textbox"], headers=["LoRA", "Alias", "Trigger words"],
                       samples=lora_rows(services) or [["", "", ""]], type="values", layout="table", samples_per_page=20)
    wildcards = gr.Dataset(label="Wildcards (click to add to the prompt)", elem_id=f"{tab}_wildcard_list",
                           components=["textbox"], headers=["Wildcard"], samples=wildcard_rows(services) or [[""]],
                           type="values", layout="table", samples_per_page=20)

    def add_lora(row, text):
        name = row[0] if row else ""
        return insert_tag(text, f"<lora:{name}:1>") if name else text

    def add_wildcard(row, text):
        name = row[0] if row else ""
        return insert_tag(text, f"__{name}__") if name else text

    def refresh_lists():
        note = ""
        try:
            services.catalog.refresh_loras()
        except Exception as exc:
            note = f"LoRA scan failed: {common.markdown_text(common.readable_error(exc))}. "
        try:
            services.refresh_wildcards()
        except Exception as exc:
            note += f"Wildcard scan failed: {common.markdown_text(common.readable_error(exc))}."
        wildcard_samples = wildcard_rows(services)
        lora_samples = lora_rows(services)
        note = note or f"{len(lora_samples)} LoRA(s), {len(wildcard_samples)} wildcard(s)."
        return gr.Dataset(samples=lora_samples or [["", "", ""]]), gr.Dataset(samples=wildcard_samples or [[""]]), note

    loras.click(add_lora, inputs=[loras, prompt], outputs=[prompt], queue=False, show_progress="hidden")
    wildcards.click(add_wildcard, inputs=[wildcards, prompt], outputs=[prompt], queue=False, show_progress="hidden")
    refresh.click(refresh_lists, outputs=[loras, wildcards, message], show_progress="hidden")
    return NetworksPanel(loras, wildcards, refresh, message)
