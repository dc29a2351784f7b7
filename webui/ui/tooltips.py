"""Tooltips for the page's buttons (A1111 shows one on every icon button), set by a small page script.

gradio buttons take no ``title``, so a script on page load writes each tip as
the button's ``title`` and ``aria-label``, also for widgets drawn later (tabs
that open, panels that appear).
"""
from __future__ import annotations

import json

# elem_id -> tip; "{tab}" stands for txt2img, img2img and inpaint.
TIPS = {
    "refresh_sd_model_checkpoint": "Refresh the list of checkpoints and VAEs",
    "theme_toggle": "Switch between the light and the dark theme",
    "{tab}_random_seed": "Set the seed to -1: a new random seed for every job",
    "{tab}_reuse_seed": "Reuse the seed of the selected image",
    "{tab}_random_subseed": "Set the variation seed to -1 (random)",
    "{tab}_paste": "Read generation parameters from the prompt box, or from the last saved image when it holds none",
    "{tab}_clear_prompt": "Clear the prompt and the negative prompt",
    "{tab}_style_apply": "Write the chosen styles into the prompt boxes and clear the style choice",
    "{tab}_networks_refresh": "Scan the LoRA, embedding and wildcard folders again",
    "{tab}_token_counter": "Tokens of the prompt / tokens that fit in its 75-token chunks",
    "{tab}_negative_token_counter": "Tokens of the negative prompt / tokens that fit in its 75-token chunks",
}
TABS = ("txt2img", "img2img", "inpaint")


def tips_by_id() -> dict[str, str]:
    """Every tip by its element id (the ``{tab}`` entries once per generation tab)."""
    out = {}
    for elem_id, tip in TIPS.items():
        for tab in TABS if "{tab}" in elem_id else ("",):
            out[elem_id.replace("{tab}", tab)] = tip
    return out


def page_script() -> str:
    """The page-load script that writes the tips (run with ``demo.load(None, js=...)``)."""
    return """() => {
  const tips = %s;
  const apply = () => {
    for (const [id, tip] of Object.entries(tips)) {
      const el = document.getElementById(id);
      if (el && el.title !== tip) { el.title = tip; if (el.tagName === 'BUTTON') el.setAttribute('aria-label', tip); }
    }
  };
  apply();
  new MutationObserver(apply).observe(document.body, {childList: true, subtree: true});
}""" % json.dumps(tips_by_id())
