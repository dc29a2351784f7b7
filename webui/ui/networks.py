"""Extra networks: the card panel of a tab (checkpoints, LoRAs, embeddings, wildcards) and its handlers."""
from dataclasses import dataclass

import gradio as gr

from webui.ui import common, network_cards


@dataclass
class NetworksPanel:
    cards: gr.HTML
    metadata: gr.Code
    refresh: gr.Button
    message: gr.Markdown


def build_networks_panel(tab: str, services, prompt: gr.Textbox, checkpoint: gr.Dropdown | None = None) -> NetworksPanel:
    """Build the card panel (inside an accordion) for one tab's prompt box (see network_cards.py)."""
    thumbnails = network_cards.ThumbnailCache()
    with gr.Row():
        refresh = gr.Button("↻ Refresh", elem_id=f"{tab}_networks_refresh", size="sm", scale=0, min_width=100)
        message = gr.Markdown("", elem_id=f"{tab}_networks_message")
    cards = gr.HTML(network_cards.cards_html(tab, network_cards.collect_cards(services, thumbnails)),
                    elem_id=f"{tab}_network_cards", js_on_load=network_cards.CARDS_JS,
                    css_template=network_cards.CARDS_CSS)
    metadata = gr.Code(label="LoRA training metadata (ss_* tags)", language="json", visible=False,
                       elem_id=f"{tab}_lora_metadata", interactive=False)

    def refresh_cards():
        note = ""
        try:
            services.catalog.refresh_loras()
            services.catalog.refresh_embeddings()
        except Exception as exc:
            note = f"Scan failed: {common.markdown_text(common.readable_error(exc))}. "
        try:
            services.refresh_wildcards()
        except Exception as exc:
            note += f"Wildcard scan failed: {common.markdown_text(common.readable_error(exc))}."
        found = network_cards.collect_cards(services, thumbnails)
        counts = ", ".join(f"{len(found[kind])} {kind}(s)" for kind in network_cards.KINDS)
        return network_cards.cards_html(tab, found), note or counts

    def on_card(evt: gr.EventData):
        data = getattr(evt, "_data", None) or {}
        action, name = data.get("action"), data.get("name", "")
        if action == "meta":
            try:
                return gr.Code(value=network_cards.lora_metadata_text(services, name), visible=True), gr.skip(), ""
            except Exception as exc:
                return gr.Code(visible=False), gr.skip(), common.markdown_text(common.readable_error(exc))
        if action == "checkpoint" and checkpoint is not None:
            try:
                info = services.models.select_checkpoint(name)
            except Exception as exc:
                return gr.skip(), gr.skip(), f"**Could not load the checkpoint:** " \
                    f"{common.markdown_text(common.readable_error(exc))}"
            title = getattr(info, "title", name)
            return gr.skip(), gr.Dropdown(value=title), f"Loaded {common.markdown_text(title)}."
        return gr.skip(), gr.skip(), ""

    outputs = [metadata, checkpoint if checkpoint is not None else gr.State(None), message]
    cards.click(on_card, outputs=outputs, show_progress="hidden")
    refresh.click(refresh_cards, outputs=[cards, message], show_progress="hidden")
    return NetworksPanel(cards, metadata, refresh, message)
