"""In a real browser: the sign-in page, a hostile page on another localhost port, HTML in a message."""
from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.browser import ui
from tests.browser.conftest import ROOT, free_port, start_app, stop_app

FRIEND = f"http://localhost:{free_port()}"
HOSTILE_NAME = "<img src=x onerror=document.title='owned'>[link](http:evil.example).ckpt"


@pytest.fixture(scope="module")
def signed_app(tmp_path_factory, browser):
    """The fake-engine app with --gradio-auth, and a checkpoint whose file name is HTML."""
    from tests.browser.fake_stack import write_fake_checkpoints

    root = tmp_path_factory.mktemp("signed_app")
    models, outdir = root / "models", root / "outputs"
    write_fake_checkpoints(models / "Stable-diffusion", ("tiny-a.ckpt", HOSTILE_NAME))
    command = [sys.executable, str(ROOT / "tests" / "browser" / "serve_fake.py"), "--models-dir", str(models),
               "--outdir", str(outdir), "--gradio-auth", "alice:wonderland", "--cors-allow-origins", FRIEND]
    app = start_app(command, root, models, outdir, ready_status=(200, 401))
    yield app
    stop_app(app)


def signed_in_page(browser, app):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(app.url)
    page.fill("#login_username", "alice")
    page.fill("#login_password", "wonderland")
    page.click("#login_submit")
    page.wait_for_selector("#txt2img_generate")
    return page


def test_login_page_keeps_strangers_out_and_lets_users_in(browser, signed_app):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(signed_app.url)
    assert "/login" in page.url
    page.fill("#login_username", "alice")
    page.fill("#login_password", "not the password")
    page.click("#login_submit")
    assert "Wrong user name or password" in page.inner_text("#login_error")
    assert page.locator("#txt2img_generate").count() == 0
    page.fill("#login_username", "alice")
    page.fill("#login_password", "wonderland")
    page.click("#login_submit")
    page.wait_for_selector("#txt2img_generate")
    ui.fill_text(page, "txt2img_prompt", "signed in")
    ui.set_number(page, "txt2img_steps", 2)
    assert "Done" in ui.generate(page, "txt2img")
    context.close()


def test_hostile_page_on_another_localhost_port_can_neither_read_nor_act(browser, fake_app, new_page):
    victim = new_page(fake_app.url)
    ui.fill_text(victim, "txt2img_prompt", "hold victim job")  # runs until it is interrupted
    ui.set_number(victim, "txt2img_steps", 5)
    victim.click("#txt2img_generate")
    ui.wait_status(victim, "txt2img", "running")

    result = run_page_script(browser, f"http://localhost:{free_port()}", fake_app.url)
    assert result["read_options"] == "blocked" and result["read_config"] == "blocked"
    assert result["read_jobs"] == "blocked" and result["interrupt_cors"] == "blocked"
    time.sleep(0.5)
    assert "running" in ui.status_text(victim, "txt2img")  # the blind POST was refused too
    victim.click("#txt2img_interrupt")
    assert "Interrupted" in ui.wait_status(victim, "txt2img", "Interrupted", "Done", "Error")


def test_an_origin_named_by_the_cors_flag_can_read(browser, signed_app):
    """The control for the test above: the same page script reads answers where CORS allows its origin."""
    result = run_page_script(browser, FRIEND, signed_app.url)
    assert result["read_options"].startswith("read 401"), result  # readable (and still needs a sign-in)


def run_page_script(browser, origin: str, app_url: str) -> dict:
    """Serve a page from a real server at ``origin`` (http://localhost:PORT) that calls the app with fetch().

    Returns what each call could see, by name. (A real server, not a routed
    response: the browser must treat the page as local, as a real attack on a
    desktop would be.)
    """
    attack = f"""<!doctype html><body><script>
    (async () => {{
      const app = {json.dumps(app_url)};
      const out = {{}};
      for (const [name, path, options] of [
          ["read_options", "sdapi/v1/options", {{}}],
          ["read_config", "config", {{}}],
          ["read_jobs", "api/v1/jobs", {{credentials: "include"}}],
          ["interrupt_cors", "sdapi/v1/interrupt", {{method: "POST"}}],
          ["interrupt_blind", "sdapi/v1/interrupt", {{method: "POST", mode: "no-cors", credentials: "include"}}]]) {{
        try {{
          const response = await fetch(app + path, options);
          out[name] = response.type === "opaque" ? "opaque" : "read " + response.status + " " + (await response.text()).slice(0, 80);
        }} catch (error) {{ out[name] = "blocked"; }}
      }}
      document.body.setAttribute("data-result", JSON.stringify(out));
    }})();
    </script></body>""".encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(attack)))
            self.end_headers()
            self.wfile.write(attack)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", int(origin.rsplit(":", 1)[1])), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    attacker = browser.new_context().new_page()
    try:
        attacker.goto(f"{origin}/attack.html")
        attacker.wait_for_function("() => document.body.hasAttribute('data-result')", timeout=20_000)
        return json.loads(attacker.get_attribute("body", "data-result"))
    finally:
        attacker.context.close()
        server.shutdown()
        server.server_close()


def test_html_in_a_message_is_shown_as_text(browser, signed_app):
    page = signed_in_page(browser, signed_app)
    (signed_app.models_dir / "Stable-diffusion" / HOSTILE_NAME).unlink()
    ui.choose(page, "setting_sd_model_checkpoint", HOSTILE_NAME[:20])
    page.wait_for_function("() => document.querySelector('#topbar_message').innerText.includes('Could not load')")
    message = page.locator("#topbar_message")
    assert "<img src=x" in message.inner_text() and "[link](http:evil.example)" in message.inner_text()
    assert message.locator("img").count() == 0 and message.locator("a").count() == 0
    assert page.title() != "owned"
    page.context.close()
