"""What the progress bar says about a job: percent, image, step and a readable ETA; state for the page script."""
from types import SimpleNamespace

from webui.schemas import JobStatus, Progress
from webui.ui.progress_view import format_eta, progress_html, progress_parts


def job(status, progress=None, position=None):
    return SimpleNamespace(id="abcdef123456", status=status, progress=progress, position=position)


def test_eta_reads_in_seconds_minutes_and_hours():
    assert [format_eta(s) for s in (None, 4.4, 59.6, 125, 3725)] == ["", "ETA 4s", "ETA 1m 00s", "ETA 2m 05s",
                                                                     "ETA 1h 02m"]


def test_a_running_job_shows_percent_image_step_and_eta_once_measured():
    progress = Progress(image_index=1, image_count=2, step=5, steps=10)
    assert progress_parts(job(JobStatus.RUNNING, progress)) == ("running", 75, "75% · image 2/2 · step 5/10 · "
                                                                               "ETA: measuring…")
    progress.step_seconds = 0.5
    state, percent, text = progress_parts(job(JobStatus.RUNNING, progress))
    assert text == "75% · image 2/2 · step 5/10 · ETA 2s"  # 5 steps left at 0.5 s


def test_the_bar_carries_state_and_title_for_the_page_and_notifies_only_when_asked():
    running = progress_html(job(JobStatus.RUNNING, Progress(step=1, steps=4)))
    assert "data-state='running'" in running and "data-title='[25%] '" in running and "<progress" in running
    queued = progress_html(job(JobStatus.QUEUED, position=2))
    assert "Queued (position 2)" in queued and "data-state='queued'" in queued
    done = progress_html(job(JobStatus.SUCCEEDED), notify=True)
    assert "data-state='succeeded'" in done and "data-notify='1'" in done and "<progress" not in done
    assert "data-notify='0'" in progress_html(job(JobStatus.INTERRUPTED))
