"""The queue panel: the user's own jobs with their status and progress, refreshed by a timer.

Jobs are private: a user sees (and cancels, and opens the results of) only their
own jobs, and only a count of other users' waiting work; an admin sees all.
"""
import html
from dataclasses import dataclass

import gradio as gr

from webui.ui import common, results

REFRESH_SECONDS = 1.5
SHOWN_JOBS = 30


@dataclass
class QueuePanel:
    timer: gr.Timer
    table: gr.HTML
    own_jobs: gr.Dropdown
    cancel: gr.Button
    finished_jobs: gr.Dropdown
    open: gr.Button
    message: gr.Markdown
    panel: results.ResultPanel


def jobs_table(jobs, owner: str, others_waiting: int = 0) -> str:
    """An HTML table of jobs, newest last, with the user's own jobs marked; other users' work as a count."""
    others = (f"<p id='queue_others'>{others_waiting} job(s) of other users queued or running.</p>"
              if others_waiting else "")
    if not jobs:
        return "<p id='queue_empty'>The queue is empty.</p>" + others
    rows = []
    for job in jobs:
        mine = getattr(job, "owner", None) == owner
        rows.append(
            f"<tr class='queue-job queue-{html.escape(common.job_status(job))}{' queue-mine' if mine else ''}'"
            f" data-job-id='{html.escape(str(job.id))}'>"
            f"<td>{html.escape(results.short_id(job.id))}</td><td>{html.escape(str(getattr(job, 'kind', '')))}</td>"
            f"<td>{html.escape(common.progress_text(job))}</td>"
            f"<td>{html.escape(common.job_prompt(job))}</td><td>{'yes' if mine else ''}</td></tr>"
        )
    return (
        "<table id='queue_jobs'><thead><tr><th>Job</th><th>Kind</th><th>Status</th><th>Prompt</th><th>Mine</th>"
        "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>" + others
    )


def _label(job) -> str:
    return f"{results.short_id(job.id)} · {common.job_status(job)} · {common.job_prompt(job, 30)}"


def build_queue_panel(services) -> QueuePanel:
    """Build the panel (inside a gr.Tab or gr.Accordion) and start its refresh timer."""
    timer = gr.Timer(REFRESH_SECONDS)
    table = gr.HTML("<p id='queue_empty'>The queue is empty.</p>", elem_id="queue_table")
    with gr.Row():
        own_jobs = gr.Dropdown(label="Your queued or running jobs", elem_id="queue_own_jobs", choices=[], value=None,
                               allow_custom_value=True)
        cancel = gr.Button("Cancel job", elem_id="queue_cancel", variant="stop")
    with gr.Row():
        finished_jobs = gr.Dropdown(label="Finished jobs", elem_id="queue_finished_jobs", choices=[], value=None,
                                    allow_custom_value=True)
        open_button = gr.Button("Open results", elem_id="queue_open")
    message = gr.Markdown("", elem_id="queue_message")
    panel = results.build_result_panel("queue", controls=False)

    def listed(request):
        """(the jobs this user may see, their owner id, how many other users' jobs wait or run)."""
        caller = common.caller(request)
        everyone = list(services.queue.list())
        visible = [j for j in everyone if caller.may_see(getattr(j, "owner", None))]
        others = sum(1 for j in everyone if not caller.may_see(getattr(j, "owner", None)) and not common.job_finished(j))
        return visible[-SHOWN_JOBS:], caller.owner, others

    def refresh(request: gr.Request):
        try:
            jobs, owner, others = listed(request)
        except Exception as exc:
            return f"<p>Could not read the queue: {html.escape(common.readable_error(exc))}</p>", gr.Dropdown(), gr.Dropdown()
        own = [(_label(j), str(j.id)) for j in jobs if getattr(j, "owner", None) == owner and not common.job_finished(j)]
        done = [(_label(j), str(j.id)) for j in reversed(jobs) if common.job_finished(j)]
        # Only the choices change: a tick that left before the user picked a job must not undo the pick
        # (the buttons answer a job that has gone with a message).
        return jobs_table(jobs, owner, others), gr.Dropdown(choices=own), gr.Dropdown(choices=done)

    def find(job_id, request):
        """The job with this id if it is the user's own (another's is as unknown as a missing one)."""
        caller = common.caller(request)
        for job in services.queue.list():
            if str(job.id) == str(job_id) and caller.may_see(getattr(job, "owner", None)):
                return job
        return None

    def cancel_job(job_id, request: gr.Request):
        if not job_id:
            return "Choose one of your jobs first."
        owner = None if common.caller(request).admin else common.owner_of(request)
        try:
            job = find(job_id, request)
            if job is None:
                return f"No job {common.markdown_text(job_id)}."
            if common.job_status(job) == "running":
                services.queue.interrupt(job.id, owner=owner)
                return f"Interrupting job {job.id}."
            services.queue.cancel(job.id, owner=owner)
            return f"Canceled job {job.id}."
        except Exception as exc:
            return f"**Error:** {common.markdown_text(common.readable_error(exc))}"

    def open_job(job_id, request: gr.Request):
        job = find(job_id, request) if job_id else None
        if job is None:
            return {message: "Choose a finished job first."}
        updates = results.result_updates(panel, job)
        updates[message] = f"Job {job.id}: {common.job_status(job)}"
        return updates

    timer.tick(refresh, inputs=None, outputs=[table, own_jobs, finished_jobs],
               show_progress="hidden", concurrency_limit=None)
    cancel.click(cancel_job, inputs=[own_jobs], outputs=[message], show_progress="hidden")
    open_button.click(open_job, inputs=[finished_jobs], outputs=[message, *panel.outputs], show_progress="hidden")
    return QueuePanel(timer, table, own_jobs, cancel, finished_jobs, open_button, message, panel)
