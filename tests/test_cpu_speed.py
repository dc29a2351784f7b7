"""--precision auto on the CPU: bf16 only where the processor computes it natively and it measured faster."""
from __future__ import annotations

from webui.config import Settings
from webui.cpu_speed import Timing, cpu_flags, cpu_model, decide, fastest_cpu_precision, measure, native_bf16

AVX2_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme sse sse2 avx avx2 fma
"""
SAPPHIRE_RAPIDS_CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile
"""


def test_cpuinfo_flags_say_whether_bf16_is_native():
    assert cpu_model(SAPPHIRE_RAPIDS_CPUINFO) == "Intel(R) Xeon(R) Platinum 8480+"
    assert native_bf16(cpu_flags(SAPPHIRE_RAPIDS_CPUINFO))
    assert not native_bf16(cpu_flags(AVX2_CPUINFO))
    assert cpu_flags("") == set()


def test_bf16_is_chosen_only_when_clearly_faster_and_close_to_fp32():
    fp32 = Timing(1.0, 0.0)
    assert decide(fp32, Timing(0.6, 0.005)).dtype == "bf16"
    assert decide(fp32, Timing(0.6, 0.005)).channels_last
    slow = decide(fp32, Timing(0.95, 0.005))
    assert slow.dtype == "fp32" and "0.95x" in slow.reason
    lossy = decide(fp32, Timing(0.5, 0.08))
    assert lossy.dtype == "fp32" and "differs" in lossy.reason


def test_without_native_bf16_nothing_is_measured(tmp_path):
    def must_not_run():
        raise AssertionError("measured on a CPU without native bf16")

    choice = fastest_cpu_precision(tmp_path / "cache.json", AVX2_CPUINFO, must_not_run)
    assert choice.dtype == "fp32" and "no native bf16" in choice.reason
    assert not (tmp_path / "cache.json").exists()


def test_a_native_bf16_cpu_is_measured_once_and_the_answer_kept(tmp_path):
    calls = []

    def fake_measure():
        calls.append(1)
        return Timing(2.0, 0.0), Timing(1.2, 0.004)

    cache = tmp_path / "cache" / "cpu_precision.json"
    first = fastest_cpu_precision(cache, SAPPHIRE_RAPIDS_CPUINFO, fake_measure)
    again = fastest_cpu_precision(cache, SAPPHIRE_RAPIDS_CPUINFO, fake_measure)
    assert first == again and first.dtype == "bf16" and "0.60x" in first.reason
    assert len(calls) == 1 and "Xeon" in cache.read_text()


def test_the_probe_block_really_runs_in_both_precisions():
    fp32, bf16 = measure(repeat=1, side=8, channels=64)
    assert fp32.seconds > 0 and bf16.seconds > 0
    assert 0 < bf16.difference < 0.05  # bf16 rounds: close to fp32, never identical


def test_settings_on_this_machine_give_a_cpu_choice_with_its_reason(tmp_path):
    choice = Settings(outdir=tmp_path, device="cpu").device_choice()
    assert choice.device == "cpu" and choice.dtype in ("fp32", "bf16") and choice.why
