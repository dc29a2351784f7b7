"""Every A1111 file name tag expands as A1111 1.10 expands it (values from its wiki page and source)."""
import datetime
import hashlib

import pytest
from PIL import Image

from webui.filename_patterns import TAG_NAMES, NameContext, apply_pattern, sanitize_part

NOW = datetime.datetime(2022, 10, 24, 16, 31, 6, 733877, tzinfo=datetime.timezone.utc)
PROMPT = "1girl,  white space, ((very important)), [not important], (some value:1.5), (whatever), the end"
STYLE = "{prompt}, (((crystals texture Hair)))"
FULL_PROMPT = PROMPT + ", (((crystals texture Hair)))"


def ctx(**changes) -> NameContext:
    base = dict(seed=1234567891, all_seeds=[1234567890, 1234567891, 1234567892, 1234567893], prompt=FULL_PROMPT,
                negative_prompt="ugly, blurry", styles=["my style name"], style_prompts=[STYLE], steps=20,
                cfg_scale=7.0, sampler_name="DPM++ 2M", scheduler="karras", model_hash="7460a6fa",
                model_name="sd-v1-4", vae_filename="vae-ft-mse-840000-ema-pruned.safetensors",
                denoising_strength=None, clip_skip=2, batch_size=4, n_iter=3, batch_index=2, iteration=1,
                job_timestamp="20221025013106", image=Image.new("RGB", (512, 384), (1, 2, 3)), now=NOW)
    base.update(changes)
    return NameContext(**base)


@pytest.mark.parametrize("pattern, expected", [
    ("[seed]", "1234567891"),
    ("[seed_first]", "1234567890"),
    ("[seed_last]", "1234567893"),
    ("[steps]", "20"),
    ("[cfg]", "7.0"),
    ("[width]x[height]", "512x384"),
    ("[styles]", "my style name"),
    ("[sampler]", "DPM++ 2M"),
    ("[scheduler]", "Karras"),
    ("[sampler_scheduler]", "DPM++ 2M Karras"),
    ("[model_hash]", "7460a6fa"),
    ("[model_name]", "sd-v1-4"),
    ("[date]", "2022-10-24"),
    ("[datetime<%Y%m%d_%H%M%S_%f><UTC>]", "20221024_163106_733877"),
    ("[datetime<%Y%m%d_%H%M%S><Asia/Tokyo>]", "20221025_013106"),
    ("[datetime<%H><Not/AZone>]", NOW.astimezone().strftime("%H")),
    ("[job_timestamp]", "20221025013106"),
    ("[clip_skip]", "2"),
    ("BatchNo_[batch_number]", "BatchNo_3"),
    ("GenNo_[generation_number]", "GenNo_7"),
    ("[batch_size]", "4"),
    ("[vae_filename]", "vae-ft-mse-840000-ema-pruned"),
    ("[none]", ""),
    ("[prompt]", "1girl,__white_space,_((very_important)),_[not_important],_(some_value_1.5),_(whatever),"
                 "_the_end,_(((crystals_texture_Hair)))"),
    ("[prompt_spaces]", "1girl,  white space, ((very important)), [not important], (some value_1.5), (whatever), "
                        "the end, (((crystals texture Hair)))"),
    ("[prompt_no_styles]", "1girl,  white space, ((very important)), [not important], (some value_1.5), "
                           "(whatever), the end"),
    ("[prompt_words]", "1girl white space very important not important some"),
    ("[negative_prompt]", "ugly,_blurry"),
    ("[hasprompt<girl><boy>]", "girl"),
    ("[hasprompt<girl|no girl><boy|no boy>]", "girlno_boy"),
    ("[unknown_tag]-[seed]", "[unknown_tag]-1234567891"),
    ("[SEED]", "1234567891"),
])
def test_tags_expand_as_a1111(pattern, expected):
    assert apply_pattern(pattern, ctx()) == expected


def test_datetime_without_format_uses_a1111_default():
    assert apply_pattern("[datetime]", ctx()) == NOW.astimezone().strftime("%Y%m%d%H%M%S")
    assert apply_pattern("[datetime<>]", ctx()) == NOW.astimezone().strftime("%Y%m%d%H%M%S")


def test_hashes_have_a1111_lengths():
    assert apply_pattern("[prompt_hash]", ctx(prompt="")) == "e3b0c442"  # the wiki's example: sha256 of ""
    sha = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    assert apply_pattern("[prompt_hash<12>]", ctx()) == sha(FULL_PROMPT)[:12]
    assert apply_pattern("[negative_prompt_hash]", ctx()) == sha("ugly, blurry")[:8]
    assert apply_pattern("[full_prompt_hash]", ctx()) == sha(FULL_PROMPT + " ugly, blurry")[:8]
    image = Image.new("RGB", (4, 4), (9, 9, 9))
    assert apply_pattern("[image_hash]", ctx(image=image)) == hashlib.sha256(image.tobytes()).hexdigest()
    assert apply_pattern("[image_hash<10>]", ctx(image=image)) == hashlib.sha256(image.tobytes()).hexdigest()[:10]


def test_tags_with_nothing_to_say_vanish_with_the_text_before_them():
    single = ctx(batch_size=1, n_iter=1, all_seeds=[5], seed=5)
    assert apply_pattern("[seed]-[seed_last]", single) == "5"
    assert apply_pattern("[seed_first]", single) == "5"
    assert apply_pattern("[seed]-[batch_number]_[generation_number]", single) == "5"
    assert apply_pattern("[seed]-[denoising]", ctx()) == "1234567891"
    assert apply_pattern("[seed]-[denoising]", ctx(denoising_strength=0.75)) == "1234567891-0.75"
    assert apply_pattern("[seed]-[batch_number]", ctx(grid=True)) == "1234567891"


def test_missing_values_keep_the_tag_as_a1111():
    assert apply_pattern("[user]", ctx()) == "[user]"
    assert apply_pattern("[vae_filename]", ctx(vae_filename=None)) == "NoneType"
    assert apply_pattern("[styles]", ctx(styles=[])) == "None"
    assert apply_pattern("[prompt_words]", ctx(prompt="(( ))")) == "empty"


def test_prompt_parts_are_cleaned_and_cut_to_128_characters():
    assert sanitize_part('a/b\\c:d*e?f"g<h>i|j#k\tl') == "a_b_c_d_e_f_g_h_i_j_k_l"
    long = apply_pattern("[prompt]", ctx(prompt="word " * 100))
    assert len(long) == 128 and long.startswith("word_word")
    assert len(apply_pattern("[prompt]", ctx(prompt="abc." * 40))) == 128 - 1  # trailing dot dropped after the cut
    assert apply_pattern("[prompt_spaces]", ctx(prompt="  end. ")) == "end"
    assert apply_pattern("[prompt_words]", ctx(prompt="a b c d e f g h i j"), max_prompt_words=3) == "a b c"


def test_every_documented_tag_is_known():
    for tag in ("seed", "seed_first", "seed_last", "steps", "cfg", "width", "height", "styles", "sampler",
                "scheduler", "model_hash", "model_name", "prompt", "prompt_no_styles", "prompt_spaces",
                "prompt_words", "prompt_hash", "negative_prompt", "negative_prompt_hash", "full_prompt_hash",
                "denoising", "clip_skip", "batch_number", "generation_number", "datetime", "date",
                "job_timestamp", "hasprompt", "none", "vae_filename", "image_hash", "user"):
        assert tag in TAG_NAMES
