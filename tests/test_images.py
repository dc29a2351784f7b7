"""Saving images with infotext: folder layout, numbering, atomic writes, metadata read back."""
import base64
import datetime
import io
import threading

import pytest
from PIL import Image

from webui.images import encode_png_base64, read_image_info, read_infotext, save_image

INFO = "a cat, (dog:1.1)\nNegative prompt: ugly\nSteps: 4, Sampler: Euler a, CFG scale: 7, Seed: 77, Size: 16x16"


def _image(color=(200, 10, 10)):
    return Image.new("RGB", (16, 16), color)


def test_saves_under_category_and_date_with_number_and_seed(tmp_path):
    day = datetime.date(2024, 5, 17)
    first = save_image(_image(), tmp_path, "txt2img-images", seed=77, infotext=INFO, date=day)
    second = save_image(_image(), tmp_path, "txt2img-images", seed=78, infotext=INFO, date=day)
    assert first == tmp_path / "txt2img-images" / "2024-05-17" / "00000-77.png"
    assert second.name == "00001-78.png"
    assert save_image(_image(), tmp_path, "txt2img-images", seed=1, infotext=None).parent.name == \
        datetime.date.today().isoformat()


def test_numbering_continues_highest_existing(tmp_path):
    folder = tmp_path / "img2img-images" / "2024-01-02"
    folder.mkdir(parents=True)
    (folder / "00041-5.png").write_bytes(b"x")
    (folder / "notes.txt").write_text("not numbered")
    path = save_image(_image(), tmp_path, "img2img-images", seed=9, infotext=INFO, date=datetime.date(2024, 1, 2))
    assert path.name == "00042-9.png"


def test_png_carries_parameters_chunk_and_no_temp_files_remain(tmp_path):
    path = save_image(_image(), tmp_path, "txt2img-images", seed=77, infotext=INFO)
    with Image.open(path) as loaded:
        assert loaded.info["parameters"] == INFO
        assert read_infotext(loaded) == INFO
        assert loaded.getpixel((3, 3)) == (200, 10, 10)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_jpeg_and_webp_carry_infotext_in_exif(tmp_path, fmt):
    text = INFO + ", Note: ünïcødé ✓"
    path = save_image(_image(), tmp_path, "extras-images", seed=None, infotext=text, fmt=fmt)
    assert path.suffix == f".{fmt}" and path.name == f"00000.{fmt}"
    with Image.open(path) as loaded:
        assert read_infotext(loaded) == text


def test_unicode_infotext_in_png(tmp_path):
    text = "猫, café\nSteps: 1, Seed: 2, Size: 8x8"
    path = save_image(_image(), tmp_path, "txt2img-images", seed=2, infotext=text)
    with Image.open(path) as loaded:
        assert read_infotext(loaded) == text


def test_concurrent_saves_never_share_a_name(tmp_path):
    paths, errors = [], []

    def worker(i):
        try:
            paths.append(save_image(_image((i, i, i)), tmp_path, "txt2img-images", seed=i, infotext=INFO))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    numbers = sorted(int(p.name.split("-")[0]) for p in paths)
    assert numbers == list(range(12))
    files = list(paths[0].parent.iterdir())
    assert len(files) == 12 and not any(f.name.startswith(".") for f in files)


def test_bad_format_category_and_suffix(tmp_path):
    with pytest.raises(ValueError):
        save_image(_image(), tmp_path, "txt2img-images", seed=1, infotext=None, fmt="bmp")
    with pytest.raises(ValueError):
        save_image(_image(), tmp_path, "../escape", seed=1, infotext=None)
    path = save_image(_image(), tmp_path, "extras-images", seed=None, infotext=None, name_suffix="-../../x")
    assert path.parent.parent.parent == tmp_path and "/" not in path.name


def test_encode_png_base64_carries_chunk_and_items():
    text = encode_png_base64(_image(), INFO)
    loaded = Image.open(io.BytesIO(base64.b64decode(text)))
    info, items = read_image_info(loaded)
    assert info == INFO and items["parameters"] == INFO
    assert read_infotext(Image.open(io.BytesIO(base64.b64decode(encode_png_base64(_image(), None))))) is None


def test_encoding_ignores_save_options_left_on_the_image_by_another_thread():
    # PIL keeps save options on the image object; when the job store and the API save
    # one result image at the same time, the image can be left holding the other
    # save's options (pnginfo=None), which then override ours on every later save.
    image = Image.new("RGB", (16, 16), (1, 2, 3))
    image.encoderinfo = {"pnginfo": None}
    encoded = encode_png_base64(image, INFO)
    assert read_infotext(Image.open(io.BytesIO(base64.b64decode(encoded)))) == INFO
