"""Noise as A1111 makes it: Philox ("NV") against published vectors, per-image streams, ENSD, variation seeds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from webui.engine.noise import ImageRNG, PhiloxGenerator, make_image_rng, philox4x32, variation_seeds
from webui.schemas import GenerationRequest

# Random123's known-answer vectors for philox4x32_10: (counter, key) -> output.
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]

# torch.manual_seed(0); torch.randn(8, 8, device="cuda"), as published (printed to 4 decimals).
CUDA_SEED0_8x8 = [
    [-0.9247, -0.4253, -2.6438, 0.1452, -0.1209, -0.5797, -0.6229, -0.3284],
    [-1.0745, -0.3631, -1.6711, 2.2655, 0.3117, -0.1842, 1.2866, 1.1820],
    [-0.1271, 1.2169, 1.4353, 1.0605, -0.4941, -1.4244, -0.7244, -1.2973],
    [0.0697, -0.0074, 1.8969, 0.6878, -0.0779, -0.8373, 1.3506, -0.2879],
    [-0.5965, -0.3283, -0.9086, -0.8059, -0.7407, -0.0504, 0.5435, 1.5150],
    [0.0141, 0.4532, 1.6349, 0.7124, -0.1806, 1.0252, -1.4622, -0.7554],
    [-0.1836, 0.3824, 0.3918, -0.0830, 0.8971, -1.1123, 0.1116, 0.4863],
    [-0.5499, -0.3231, -0.5469, 0.9049, 0.2837, 0.1210, 0.4730, -1.0823],
]
# The same draw for shape (3, 4) as A1111's rng_philox documents it (8 digits).
CUDA_SEED0_3x4 = [
    [-0.92466259, -0.42534415, -2.6438457, 0.14518388],
    [-0.12086647, -0.57972564, -0.62285122, -0.32838709],
    [-1.07454231, -0.36314407, -1.67105067, 2.26550497],
]
SHAPE = (4, 8, 8)


@pytest.mark.parametrize("counter,key,expected", PHILOX_KAT)
def test_philox4x32_10_known_answers(counter, key, expected):
    out = philox4x32(np.array(counter, dtype=np.uint32).reshape(4, 1), np.array(key, dtype=np.uint32).reshape(2, 1))
    assert tuple(int(x) for x in out[:, 0]) == expected


def test_nv_equals_torch_randn_on_cuda():
    np.testing.assert_allclose(PhiloxGenerator(0).randn((8, 8)), CUDA_SEED0_8x8, atol=5.1e-5)
    np.testing.assert_allclose(PhiloxGenerator(0).randn((3, 4)), CUDA_SEED0_3x4, atol=1e-6)
    if torch.cuda.is_available():  # on an NVIDIA card, check more seeds and shapes against the real thing
        for seed, shape in ((1, (4, 64, 64)), (123456789, (4, 96, 80)), (2**32 + 5, (4, 8, 8))):
            cuda = torch.randn(shape, generator=torch.Generator("cuda").manual_seed(seed), device="cuda")
            torch.testing.assert_close(torch.from_numpy(PhiloxGenerator(seed).randn(shape)), cuda.cpu(),
                                       atol=1e-5, rtol=1e-5)


def test_nv_draws_advance_and_seeds_differ():
    generator = PhiloxGenerator(7)
    first, second = generator.randn(SHAPE), generator.randn(SHAPE)
    assert first.dtype == np.float32 and not np.array_equal(first, second)
    assert np.array_equal(PhiloxGenerator(7).randn(SHAPE), first)
    assert not np.array_equal(PhiloxGenerator(8).randn(SHAPE), first)
    big = PhiloxGenerator(3).randn((4, 64, 64))
    assert abs(float(big.mean())) < 0.03 and abs(float(big.std()) - 1) < 0.03


def test_gpu_source_off_cuda_is_nv_and_cpu_source_is_torchs_generator():
    gpu = ImageRNG(SHAPE, [5, 6], source="GPU").first()
    nv = ImageRNG(SHAPE, [5, 6], source="NV").first()
    assert torch.equal(gpu, nv)
    assert torch.equal(nv[1], torch.from_numpy(PhiloxGenerator(6).randn(SHAPE)))
    cpu = ImageRNG(SHAPE, [5, 6], source="CPU").first()
    assert torch.equal(cpu[0], torch.randn(SHAPE, generator=torch.Generator().manual_seed(5)))
    with pytest.raises(ValueError, match="noise source"):
        ImageRNG(SHAPE, [1], source="TPU")


@pytest.mark.parametrize("source", ["CPU", "NV"])
def test_streams_continue_per_image_and_a_batch_equals_singles(source):
    batch = ImageRNG(SHAPE, [10, 11], source=source)
    draws = [batch.first(), batch.next(), batch.next()]
    for index, seed in enumerate((10, 11)):
        single = ImageRNG(SHAPE, [seed], source=source)
        alone = [single.first(), single.next(), single.next()]
        for together, by_itself in zip(draws, alone):
            assert torch.equal(together[index], by_itself[0])
    assert not torch.equal(draws[0], draws[1])
    generator = torch.Generator().manual_seed(10)
    expected = [torch.randn(SHAPE, generator=generator) for _ in range(3)]
    if source == "CPU":  # the initial noise and the sampler noise are one generator's successive draws
        assert all(torch.equal(d[0], e) for d, e in zip(draws, expected))


def test_next_before_first_gives_the_initial_noise():
    assert torch.equal(ImageRNG(SHAPE, [3], source="NV").next(), ImageRNG(SHAPE, [3], source="NV").first())


def test_ensd_restarts_the_sampler_streams_but_keeps_the_initial_noise():
    plain, delta = ImageRNG(SHAPE, [20], source="CPU"), ImageRNG(SHAPE, [20], source="CPU", eta_noise_seed_delta=31337)
    assert torch.equal(plain.first(), delta.first())
    after = delta.next()
    assert not torch.equal(plain.next(), after)
    assert torch.equal(after[0], torch.randn(SHAPE, generator=torch.Generator().manual_seed(20 + 31337)))


def test_variation_strength_blends_from_seed_to_subseed():
    def noise(strength):
        return ImageRNG(SHAPE, [1], source="NV", subseeds=[2], subseed_strength=strength).first()[0]

    seed_noise = ImageRNG(SHAPE, [1], source="NV").first()[0]
    subseed_noise = ImageRNG(SHAPE, [2], source="NV").first()[0]
    assert torch.equal(noise(0.0), seed_noise)
    torch.testing.assert_close(noise(1.0), subseed_noise, atol=1e-5, rtol=1e-5)
    half = noise(0.5)
    assert (half - seed_noise).abs().mean() > 0.2 and (half - subseed_noise).abs().mean() > 0.2
    assert abs(float(half.std()) - 1) < 0.2  # spherical, not linear: the blend keeps noise's scale


def test_seed_resize_places_the_small_noise_centred():
    # Made for 32x32 pixels (4x4 latents), generated at 64x64 (8x8): the centre is the small noise.
    resized = ImageRNG(SHAPE, [9], source="NV", seed_resize_from_w=32, seed_resize_from_h=32).first()[0]
    small = ImageRNG((4, 4, 4), [9], source="NV").first()[0]
    assert torch.equal(resized[:, 2:6, 2:6], small)
    plain = ImageRNG(SHAPE, [9], source="NV").first()[0]
    assert torch.equal(resized[:, :2], plain[:, :2])  # the border is the image's own noise
    same = ImageRNG(SHAPE, [9], source="NV", seed_resize_from_w=64, seed_resize_from_h=64).first()[0]
    assert torch.equal(same, plain)
    bigger = ImageRNG((4, 2, 2), [9], source="NV", seed_resize_from_w=32, seed_resize_from_h=32).first()[0]
    assert torch.equal(bigger, small[:, 1:3, 1:3])  # larger than the target: cropped around its centre


def test_variation_seed_numbering_follows_a1111():
    assert variation_seeds(100, 7, 0.0, 3) == ([100, 101, 102], [7, 8, 9])
    assert variation_seeds(100, 7, 0.3, 3) == ([100, 100, 100], [7, 8, 9])  # one seed, varied subseeds


def test_make_image_rng_reads_the_request():
    request = GenerationRequest(subseed_strength=0.25, seed_resize_from_w=128, seed_resize_from_h=96,
                                randn_source="CPU", eta_noise_seed_delta=5)
    rng = make_image_rng(request, SHAPE, [1, 1], [4, 5], "cpu")
    assert (rng.source, rng.subseeds, rng.subseed_strength, rng.eta_noise_seed_delta) == ("CPU", [4, 5], 0.25, 5)
    assert (rng.seed_resize_from_w, rng.seed_resize_from_h) == (128, 96)
    assert make_image_rng(GenerationRequest(), SHAPE, [1], [2], "cpu").source == "GPU"  # A1111's default
