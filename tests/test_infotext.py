"""A1111 infotext: exact layout, quoting, parsing back, and mapping to request fields."""
from webui.infotext import format_infotext, infotext_to_request_fields, parse_infotext

FIELDS = {
    "Steps": 20, "Sampler": "Euler a", "Schedule type": "Automatic", "CFG scale": 7.0, "Seed": 1234,
    "Size": "512x512", "Model hash": "0123456789", "Model": "name",
}


def test_layout_matches_a1111():
    text = format_infotext("a cat", "ugly", FIELDS)
    assert text == (
        "a cat\n"
        "Negative prompt: ugly\n"
        "Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1234, "
        "Size: 512x512, Model hash: 0123456789, Model: name"
    )


def test_empty_negative_prompt_and_none_fields_are_left_out():
    text = format_infotext("a cat", "", {**FIELDS, "VAE": None, "Denoising strength": None})
    assert "Negative prompt" not in text
    assert "VAE" not in text and "Denoising" not in text
    assert text.splitlines()[0] == "a cat" and len(text.splitlines()) == 2


def test_values_with_commas_colons_quotes_are_json_quoted():
    text = format_infotext("p", "", {**FIELDS, "Lora hashes": "add_detail: 7c6bad76eb54, x: 1", "Note": 'say "hi"'})
    assert 'Lora hashes: "add_detail: 7c6bad76eb54, x: 1"' in text
    assert 'Note: "say \\"hi\\""' in text
    parsed = parse_infotext(text)
    assert parsed["Lora hashes"] == "add_detail: 7c6bad76eb54, x: 1"  # kept as one string
    assert parsed["Note"] == 'say "hi"'
    assert parsed["Model"] == "name"  # fields after a quoted one still parse


def test_parse_a1111_text_with_multiline_prompts():
    text = (
        "masterpiece, (cat:1.2), [dog|fox]\n"
        "second prompt line\n"
        "Negative prompt: lowres, bad anatomy\n"
        "blurry\n"
        "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 42, Size: 768x512, "
        "Model hash: abcdef1234, Model: sd15, Denoising strength: 0.5, Clip skip: 2, Hires upscale: 2, "
        "Hires resize: 1024x768, Hires upscaler: Latent, Version: v1.10.1"
    )
    p = parse_infotext(text)
    assert p["Prompt"] == "masterpiece, (cat:1.2), [dog|fox]\nsecond prompt line"
    assert p["Negative prompt"] == "lowres, bad anatomy\nblurry"
    assert (p["Size-1"], p["Size-2"]) == ("768", "512")
    assert (p["Hires resize-1"], p["Hires resize-2"]) == ("1024", "768")
    assert "Size" not in p
    assert p["Schedule type"] == "Karras" and p["CFG scale"] == "6.5" and p["Version"] == "v1.10.1"


def test_round_trip_both_ways():
    fields = {**FIELDS, "Lora hashes": "a: 1, b: 2", "Template": "line one\nline two, with comma",
              "Negative Template": "bad: x", "Hires upscale": 1.5}
    text = format_infotext("a prompt,\nover two lines", "neg: with colon", fields)
    parsed = parse_infotext(text)
    assert parsed["Template"] == "line one\nline two, with comma"
    assert parsed["Negative Template"] == "bad: x"
    assert parsed["Prompt"] == "a prompt,\nover two lines"
    assert parsed["Negative prompt"] == "neg: with colon"
    prompt, negative = parsed.pop("Prompt"), parsed.pop("Negative prompt")
    assert format_infotext(prompt, negative, parsed) == text


def test_prompt_only_text_is_all_prompt():
    p = parse_infotext("just a prompt: with a colon")
    assert p["Prompt"] == "just a prompt: with a colon" and p["Negative prompt"] == ""
    assert len(p) == 2


def test_request_fields():
    text = format_infotext("cat", "dog", {**FIELDS, "Clip skip": 2, "Hires upscale": 2, "Hires upscaler": "Lanczos",
                                          "Face restoration": "CodeFormer", "Denoising strength": 0.4})
    fields = infotext_to_request_fields(parse_infotext(text))
    assert fields["prompt"] == "cat" and fields["negative_prompt"] == "dog"
    assert fields["steps"] == 20 and fields["seed"] == 1234 and fields["cfg_scale"] == 7.0
    assert (fields["width"], fields["height"]) == (512, 512)
    assert fields["sampler_name"] == "Euler a" and fields["scheduler"] == "Automatic"
    assert fields["clip_skip"] == 2 and fields["enable_hr"] is True and fields["hr_scale"] == 2.0
    assert fields["restore_faces"] is True and fields["face_restorer"] == "CodeFormer"
    assert fields["checkpoint"] == "0123456789" and fields["denoising_strength"] == 0.4


def test_request_fields_skip_garbage_and_default_clip_skip():
    fields = infotext_to_request_fields(parse_infotext("x\nSteps: many, Seed: 5, Size: 64x64"))
    assert "steps" not in fields and fields["seed"] == 5 and fields["clip_skip"] == 1
    assert "enable_hr" not in fields
