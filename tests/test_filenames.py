"""File names valid on Windows, macOS and Linux: forbidden characters, device names, byte length, no escape."""
import pytest

from webui.filenames import (
    MAX_NAME_BYTES, fit_file_name, is_reserved_name, safe_name, safe_relative_path, truncate_utf8, utf8_length,
)


@pytest.mark.parametrize("name", ["CON", "con", "Nul.txt", "aux.tar.gz", "COM1", "lpt9.png", "PRN ", "COM\u00b9"])
def test_windows_device_names_are_reserved_with_any_extension(name):
    assert is_reserved_name(name)
    assert not is_reserved_name(safe_name(name))
    assert safe_name(name).startswith("_")


@pytest.mark.parametrize("name", ["CONSOLE", "com10", "lpt", "icon", "a.con"])
def test_names_that_only_look_like_devices_stay(name):
    assert not is_reserved_name(name)
    assert safe_name(name) == name


def test_forbidden_and_control_characters_become_underscores():
    assert safe_name('a<b>c:d"e/f\\g|h?i*j\x00k\x1fl\nm') == "a_b_c_d_e_f_g_h_i_j_k_l_m"


def test_no_trailing_dots_or_spaces_no_leading_spaces_never_empty():
    assert safe_name("  name. . ") == "name"
    assert safe_name("..") == "_" and safe_name(".") == "_" and safe_name("") == "_"
    assert safe_name(" ...") == "_"


def test_truncation_counts_bytes_and_never_splits_a_character():
    emoji = "\U0001F600" * 300  # 4 bytes each
    cut = truncate_utf8(emoji, 255)
    assert utf8_length(cut) == 252 and cut == "\U0001F600" * 63
    assert truncate_utf8("e\u0301" * 3, 4) == "e\u0301e"  # no lone accent left at the cut
    assert utf8_length(safe_name("é" * 400)) <= MAX_NAME_BYTES
    assert safe_name("é" * 400).encode("utf-8").decode("utf-8")


def test_relative_path_never_climbs_out_or_becomes_absolute():
    assert safe_relative_path("../../x") == "x"
    assert safe_relative_path("/etc/passwd") == "etc/passwd"
    assert safe_relative_path("C:\\Windows\\System32") == "C_/Windows/System32"
    assert safe_relative_path("\\\\server\\share\\..\\y") == "server/share/y"
    assert safe_relative_path("a/./b//c/") == "a/b/c"
    assert safe_relative_path(".hidden/..") == "hidden"
    assert safe_relative_path("../..") == ""
    assert safe_relative_path("2024-05-01/CON") == "2024-05-01/_CON"


def test_fit_file_name_keeps_the_extension_and_room_to_spare():
    name = fit_file_name("x" * 400, "webp", reserve=8)
    assert name.endswith(".webp") and utf8_length(name) == MAX_NAME_BYTES - 8
    assert fit_file_name("CON", "png") == "_CON.png"
    assert fit_file_name("a/b", "jpg") == "a_b.jpg"
