"""Prompt tools and the History tab in the browser: the counter is the engine's count, history finds by seed."""
from __future__ import annotations

from tests.browser import ui
from webui.engine.token_counter import TokenCounter


def _counter_is(page, elem_id: str, text: str) -> None:
    page.wait_for_function("([sel, text]) => document.querySelector(sel).innerText.trim() === text",
                           arg=[f"#{elem_id}", text])


def test_token_counter_shows_the_engines_count(page, fake_app):
    prompt = ", ".join(["a (red:1.2) circle on a blue background"] * 11) + " <lora:demo-outline:1>"
    expected = TokenCounter().label(prompt, 20)
    assert expected.endswith("/150")
    ui.fill_text(page, "txt2img_prompt", prompt)
    _counter_is(page, "txt2img_token_counter", expected)
    ui.fill_text(page, "txt2img_neg_prompt", "blurry AND ugly")
    _counter_is(page, "txt2img_negative_token_counter", "3/75")
    page.click("#txt2img_clear_prompt")
    _counter_is(page, "txt2img_token_counter", "0/75")


def test_history_finds_an_image_by_its_seed_and_sends_it(page, fake_app):
    ui.fill_text(page, "txt2img_prompt", "a history square")
    ui.set_number(page, "txt2img_steps", 2)
    ui.set_number(page, "txt2img_seed", 987654)
    assert "Done" in ui.generate(page, "txt2img")
    ui.fill_text(page, "txt2img_prompt", "")
    ui.open_tab(page, "history")
    ui.set_number(page, "history_seed", 987654)  # Enter searches
    page.wait_for_function("() => document.querySelector('#history_summary').innerText.includes('1 image(s)')")
    page.locator("#history_gallery img").first.click()
    page.wait_for_function("() => document.querySelector('#history_infotext textarea').value.includes('Seed: 987654')")
    page.click("#history_send_to_txt2img")
    page.wait_for_selector("#tab_txt2img", state="visible")
    assert ui.textbox_value(page, "txt2img_prompt") == "a history square"
    # Delete asks first; "Keep it" keeps the file.
    saved = list(fake_app.outdir.rglob("*-987654.png"))
    assert len(saved) == 1
    ui.open_tab(page, "history")
    page.click("#history_delete")
    page.wait_for_selector("#history_confirm_delete", state="visible")
    page.click("#history_confirm_delete")
    page.wait_for_function("() => document.querySelector('#history_summary').innerText.includes('Deleted')")
    assert not saved[0].exists()


def test_dropping_a_png_on_the_prompt_loads_its_parameters(page, fake_app, tmp_path):
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("parameters", "a dropped château\nNegative prompt: fog\nSteps: 9, Sampler: Euler, CFG scale: 6, "
                                "Seed: 777, Size: 64x64")
    path = tmp_path / "dropped.png"
    Image.new("RGB", (64, 64)).save(path, pnginfo=info)
    ui.drop_file(page, "#txt2img_prompt textarea", path)
    page.wait_for_function("() => document.querySelector('#txt2img_prompt textarea').value === 'a dropped château'")
    page.wait_for_function("() => document.querySelector('#txt2img_seed input').value === '777'")
    assert ui.textbox_value(page, "txt2img_neg_prompt") == "fog"
    assert page.locator("#txt2img_steps input[type=number]").input_value() == "9"


def test_prompt_autocomplete_completes_a_lora_name(page, fake_app):
    box = page.locator("#txt2img_prompt textarea")
    box.fill("a cat, ")
    box.press("End")
    page.keyboard.type("<lora:demo")
    page.wait_for_selector("#prompt_autocomplete li", state="visible")
    assert page.locator("#prompt_autocomplete li").first.inner_text() == "<lora:demo-outline:1>"
    page.keyboard.press("Tab")
    page.wait_for_function("() => document.querySelector('#txt2img_prompt textarea').value"
                           " === 'a cat, <lora:demo-outline:1>'")


def test_style_names_complete_as_typed_and_apply_to_the_prompt(page, fake_app):
    ui.fill_text(page, "txt2img_prompt", "a cat")
    box = page.locator("#txt2img_styles input").first
    box.click()
    page.keyboard.type("bri")
    options = page.locator("#txt2img_styles li[role=option]")
    options.first.wait_for()
    assert [options.nth(i).inner_text().strip() for i in range(options.count())] == ["Bright"]
    page.keyboard.press("Enter")
    page.locator("#demo_note").click()  # close the list
    page.click("#txt2img_style_apply")
    page.wait_for_function("() => document.querySelector('#txt2img_prompt textarea').value"
                           " === 'a cat, bright colours'")
