"""Tools under a tab's prompt boxes: A1111's token counters, paste-last-parameters, clear and apply-styles.

The counters use the engine's own tokenizer and chunking (webui/engine/token_counter.py),
so "80/150" here is what the engine will encode. Paste reads the prompt box as
infotext when it holds one, else the newest saved image's parameters (A1111's ↙).
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from webui.ui import common

PASTE_TIP = "Read generation parameters from the prompt box, or from the last saved image when the box holds none"
CLEAR_TIP = "Clear the prompt and the negative prompt"
STYLE_TIP = "Write the chosen styles into the prompt boxes (and clear the style choice)"
# Fields paste never changes: the model and the images belong to the tab.
NOT_PASTED = {"checkpoint", "init_image", "mask"}


@dataclass
class PromptTools:
    token_counter: gr.Markdown
    negative_token_counter: gr.Markdown
    paste: gr.Button
    clear: gr.Button
    apply_styles: gr.Button


def build_prompt_tools(tab: str) -> PromptTools:
    """The counters and buttons, one row under the prompt row."""
    with gr.Row(elem_id=f"{tab}_prompt_tools", equal_height=True):
        counter = gr.Markdown("0/75", elem_id=f"{tab}_token_counter", elem_classes=["token-counter"])
        negative_counter = gr.Markdown("0/75", elem_id=f"{tab}_negative_token_counter", elem_classes=["token-counter"])
        paste = gr.Button("↙ Paste", elem_id=f"{tab}_paste", size="sm", scale=0, min_width=80)
        clear = gr.Button("Clear", elem_id=f"{tab}_clear_prompt", size="sm", scale=0, min_width=70)
        apply_styles = gr.Button("Apply styles", elem_id=f"{tab}_style_apply", size="sm", scale=0, min_width=110)
    return PromptTools(counter, negative_counter, paste, clear, apply_styles)


def counter_text(counter, text: str | None, steps, *, negative: bool = False) -> str:
    """``"n/75"`` for one box; a prompt the tokenizer cannot read shows ``"?/75"`` instead of failing."""
    try:
        return counter.label(text, int(steps or 20), negative=negative)
    except Exception as exc:
        common.log.warning("token count failed: %s", exc)
        return "?/75"


def last_parameters(services, prompt_text: str | None) -> str:
    """The infotext to paste: the prompt box's own text when it has a parameter line, else the newest image's."""
    from webui.infotext import parse_infotext

    text = (prompt_text or "").strip()
    if text and "Steps" in parse_infotext(text):
        return text
    from webui.history import OutputHistory

    latest = OutputHistory(services.settings.outdir).latest()
    return latest.infotext if latest is not None else ""


def wire_prompt_tools(tools: PromptTools, prompt, services, fields: dict, counter) -> None:
    """Connect the counters to the boxes (and the steps slider) and the buttons to the tab's fields."""
    from webui.ui import pnginfo

    steps = fields["steps"]

    def count_positive(text, steps_value):
        return counter_text(counter, text, steps_value)

    def count_negative(text, steps_value):
        return counter_text(counter, text, steps_value, negative=True)

    for trigger in (prompt.prompt.change, steps.change):
        trigger(count_positive, inputs=[prompt.prompt, steps], outputs=[tools.token_counter], queue=False,
                show_progress="hidden", trigger_mode="always_last")
    prompt.negative_prompt.change(count_negative, inputs=[prompt.negative_prompt, steps],
                                  outputs=[tools.negative_token_counter], queue=False, show_progress="hidden",
                                  trigger_mode="always_last")

    pasted = {name: comp for name, comp in fields.items() if name not in NOT_PASTED}

    def paste(text):
        infotext = last_parameters(services, text)
        if not infotext:
            common.warn("No generation parameters to paste: the prompt box holds none and no image was saved yet.")
            return {}
        values = pnginfo.infotext_fields(infotext)
        return {pasted[name]: value for name, value in values.items() if name in pasted}

    tools.paste.click(paste, inputs=[prompt.prompt], outputs=list(pasted.values()), show_progress="hidden")
    tools.clear.click(lambda: ("", ""), outputs=[prompt.prompt, prompt.negative_prompt], queue=False,
                      show_progress="hidden")

    def apply_styles(text, negative, chosen):
        if not chosen or services.styles is None:
            return text, negative, chosen
        text, negative = services.styles.apply(text or "", negative or "", chosen)
        return text, negative, []

    tools.apply_styles.click(apply_styles, inputs=[prompt.prompt, prompt.negative_prompt, prompt.styles],
                             outputs=[prompt.prompt, prompt.negative_prompt, prompt.styles], show_progress="hidden")


# Dropping a PNG on a prompt box puts its "parameters" text chunk (tEXt or iTXt, as A1111 and we
# write it) into the box and presses the tab's Paste button, which fills in the parameters.
PNG_DROP_JS = """() => {
  const boxes = '#txt2img_prompt, #img2img_prompt, #inpaint_prompt';
  const latin1 = bytes => Array.from(bytes, b => String.fromCharCode(b)).join('');
  async function inflate(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  async function pngParameters(bytes) {
    const view = new DataView(bytes.buffer);
    for (let at = 8; at + 8 <= bytes.length;) {
      const length = view.getUint32(at), type = latin1(bytes.subarray(at + 4, at + 8));
      const data = bytes.subarray(at + 8, at + 8 + length);
      at += 12 + length;
      const zero = data.indexOf(0);
      if (zero < 0 || latin1(data.subarray(0, zero)) !== 'parameters') continue;
      if (type === 'tEXt') return latin1(data.subarray(zero + 1));
      if (type === 'iTXt') {
        const compressed = data[zero + 1] === 1;
        let rest = data.subarray(zero + 3);
        rest = rest.subarray(rest.indexOf(0) + 1);  // language tag
        rest = rest.subarray(rest.indexOf(0) + 1);  // translated keyword
        return new TextDecoder().decode(compressed ? await inflate(rest) : rest);
      }
    }
    return null;
  }
  const target = e => (e.target.closest ? e.target.closest(boxes) : null);
  document.addEventListener('dragover', e => { if (target(e) && e.dataTransfer?.types?.includes('Files')) e.preventDefault(); }, true);
  document.addEventListener('drop', async e => {
    const wrap = target(e), file = e.dataTransfer?.files?.[0];
    if (!wrap || !file || file.type !== 'image/png') return;
    e.preventDefault(); e.stopPropagation();
    const text = await pngParameters(new Uint8Array(await file.arrayBuffer()));
    if (!text) return;
    const box = wrap.querySelector('textarea');
    box.value = text;
    box.dispatchEvent(new Event('input', {bubbles: true}));
    const tab = wrap.id.replace(/_prompt$/, '');
    setTimeout(() => document.getElementById(tab + '_paste')?.click(), 300);
  }, true);
}"""
