"""The ETA a user sees comes from measured step times, not from a slow first step or model load."""
from webui.jobs.step_clock import StepClock
from webui.schemas import Progress


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run_steps(clock, timer, image_index, durations, steps, image_count=1):
    reported = None
    for step, seconds in enumerate(durations, start=1):
        clock.now += seconds
        reported = timer.observe(Progress(image_index=image_index, image_count=image_count, step=step, steps=steps))
    return reported


def test_a_slow_first_step_does_not_inflate_the_eta():
    clock = FakeClock()
    timer = StepClock(clock=clock)
    # 60 s of model loading and warm-up end with step 1, then steps take 0.5 s.
    first = run_steps(clock, timer, 0, [60.0], steps=20)
    assert first.eta_seconds is None, "one step says nothing about the next ones"
    for step in range(2, 6):
        clock.now += 0.5
        progress = timer.observe(Progress(step=step, steps=20))
    assert progress.step_seconds == 0.5
    assert progress.eta_seconds == 15 * 0.5  # 15 steps to go, not 60 s x 15


def test_the_gap_between_images_is_not_a_step_and_later_images_count():
    clock = FakeClock()
    timer = StepClock(clock=clock)
    run_steps(clock, timer, 0, [5.0, 1.0, 1.0, 1.0], steps=4, image_count=2)
    clock.now += 30.0  # decoding, saving, next image's start
    last = timer.observe(Progress(image_index=1, image_count=2, step=1, steps=4))
    assert last.step_seconds == 1.0
    assert last.eta_seconds == 3.0


def test_the_estimate_follows_a_machine_that_slows_down_and_repeats_do_not_count():
    clock = FakeClock()
    timer = StepClock(window=4, clock=clock)
    run_steps(clock, timer, 0, [1.0] * 5 + [2.0] * 4, steps=50)
    clock.now += 7.0
    again = timer.observe(Progress(step=9, steps=50))  # the same step reported twice (a preview)
    assert again.step_seconds == 2.0
    assert again.eta_seconds == 41 * 2.0


def test_skipped_reports_spread_their_time_over_the_steps():
    clock = FakeClock()
    timer = StepClock(clock=clock)
    run_steps(clock, timer, 0, [9.0], steps=10)
    clock.now += 3.0
    progress = timer.observe(Progress(step=4, steps=10))
    assert progress.step_seconds == 1.0 and progress.eta_seconds == 6.0
