"""Attacks on the running app over HTTP (real API, gradio UI, queue and security middleware; a fake engine).

One test per row of the threat list: each is an attack that must fail.
"""
from __future__ import annotations

import base64
import json
import os
import re
import struct
import zlib

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.routing import Mount

from tests.security_stack import fake_services
from webui.security import SecurityPolicy
from webui.server import create_app

LOCAL = "http://127.0.0.1:7860"
EVIL = "http://evil.example"
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels with almost no data: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def gradio_blocks(app):
    return next(route.app for route in app.routes if isinstance(route, Mount)).get_blocks()


def _flatten(routes, prefix=""):
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI's included router
            yield from _flatten(route.original_router.routes, prefix + route.include_context.prefix)
        elif isinstance(route, Mount):
            yield from _flatten(route.routes, prefix + route.path)
        elif getattr(route, "path", None) is not None:
            for method in getattr(route, "methods", None) or {"GET"}:
                yield method, prefix + route.path


def all_routes(app):
    """(method, path) of every route of the app, gradio's included, with path parameters filled in."""
    return sorted({(method, re.sub(r"\{[^}]+\}", "x", path).replace("//", "/")) for method, path in _flatten(app.routes)})


@pytest.fixture(scope="module")
def open_app(tmp_path_factory):
    """The app as started without flags: no accounts, localhost only."""
    services = fake_services(tmp_path_factory.mktemp("open"))
    app = create_app(services)
    services.queue.start()
    with TestClient(app, base_url=LOCAL) as client:
        yield app, services, client
    services.queue.stop()


@pytest.fixture(scope="module")
def auth_app(tmp_path_factory):
    """The app with --gradio-auth alice:wonderland,bob:builder --admin-users root and a 1 MB body limit."""
    root = tmp_path_factory.mktemp("auth")
    services = fake_services(root)
    policy = SecurityPolicy.create(secret_key_path=root / "secret.key",
                                   ui_users={"alice": "wonderland", "bob": "builder", "root": "toor"},
                                   admins=["root"], max_body_bytes=1 << 20,
                                   cors_origins=["https://friend.example"])
    app = create_app(services, security=policy)
    services.queue.start()
    with TestClient(app, base_url=LOCAL) as client:
        yield app, services, client, policy
    services.queue.stop()


def job(prompt="a red circle", **fields):
    return {"kind": "txt2img", "request": {"prompt": prompt, "steps": 2, "width": 64, "height": 64, **fields}}


# ---------------------------------------------------------------- Host, origin, CORS, headers
def test_dns_rebinding_host_is_refused_on_api_and_ui(open_app):
    app, _, _ = open_app
    rebound = TestClient(app, base_url="http://attacker.example:7860")
    for path in ("/sdapi/v1/options", "/", "/config", "/gradio_api/info", "/api/v1/jobs"):
        response = rebound.get(path)
        assert response.status_code == 400, path
        assert "allowed-hosts" in response.json()["detail"]
    assert rebound.post("/sdapi/v1/interrupt").status_code == 400


def test_foreign_origin_is_refused_on_every_state_changing_route(open_app):
    app, _, client = open_app
    routes = [(m, p) for m, p in all_routes(app) if m in STATE_CHANGING]
    assert ("POST", "/sdapi/v1/interrupt") in routes and ("POST", "/gradio_api/queue/join") in routes
    assert ("POST", "/gradio_api/upload") in routes and ("DELETE", "/api/v1/jobs/x") in routes
    for method, path in routes:
        response = client.request(method, path, headers={"Origin": EVIL})
        assert response.status_code == 403, (method, path, response.status_code)
        same_site = client.request(method, path, headers={"Sec-Fetch-Site": "same-site"})
        assert same_site.status_code == 403, (method, path)
    other_port = client.post("/sdapi/v1/interrupt", headers={"Origin": "http://localhost:3000"})
    assert other_port.status_code == 403
    assert client.post("/sdapi/v1/interrupt", headers={"Origin": LOCAL}).status_code == 200


def test_cors_is_closed_for_api_and_gradio_even_to_localhost_pages(open_app):
    _, _, client = open_app
    for path in ("/config", "/gradio_api/info", "/sdapi/v1/sd-models"):
        for origin in ("http://localhost:3000", EVIL, "null"):
            response = client.get(path, headers={"Origin": origin})
            assert "access-control-allow-origin" not in response.headers, (path, origin)
    preflight = client.options("/sdapi/v1/txt2img", headers={"Origin": "http://localhost:3000",
                                                             "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers


def test_cors_flag_opens_the_server_to_the_named_origin_only(auth_app):
    _, _, client, _ = auth_app
    preflight = client.options("/sdapi/v1/options", headers={"Origin": "https://friend.example",
                                                             "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://friend.example"
    response = client.get("/sdapi/v1/options", auth=("alice", "wonderland"), headers={"Origin": "https://friend.example"})
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == "https://friend.example"


def test_security_headers_forbid_framing_and_sniffing(open_app):
    _, _, client = open_app
    for path in ("/", "/sdapi/v1/options"):
        headers = client.get(path).headers
        assert headers["x-frame-options"] == "SAMEORIGIN"
        assert "frame-ancestors 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"


# ---------------------------------------------------------------- authentication
def test_every_route_needs_credentials_when_auth_is_on(auth_app):
    app, _, _, _ = auth_app
    anonymous = TestClient(app, base_url=LOCAL)
    checked = 0
    for method, path in all_routes(app):
        if path in ("/login", "/logout") or method in ("HEAD", "OPTIONS"):
            continue
        response = anonymous.request(method, path, follow_redirects=False)
        assert response.status_code == 401, (method, path, response.status_code)
        checked += 1
    assert checked > 40
    for path in ("/gradio_api/queue/data?session_hash=x", "/api/v1/jobs/x/events", "/gradio_api/file=/etc/passwd"):
        assert anonymous.get(path).status_code == 401, path
    page = anonymous.get("/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


def test_api_takes_basic_credentials_and_refuses_wrong_ones(auth_app):
    app, _, _, _ = auth_app
    client = TestClient(app, base_url=LOCAL)
    assert client.get("/sdapi/v1/sd-models", auth=("alice", "wonderland")).status_code == 200
    wrong = client.get("/sdapi/v1/sd-models", auth=("alice", "guess"))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Basic")
    assert client.get("/sdapi/v1/sd-models", auth=("mallory", "wonderland")).status_code == 401


def test_login_page_signs_in_and_out(auth_app):
    app, _, _, _ = auth_app
    browser = TestClient(app, base_url=LOCAL)
    assert "login_password" in browser.get("/login").text
    bad = browser.post("/login", data={"username": "alice", "password": "nope", "next": "/"}, follow_redirects=False)
    assert bad.status_code == 401 and "Wrong user name or password" in bad.text
    good = browser.post("/login", data={"username": "alice", "password": "wonderland", "next": "//evil.example/"},
                        follow_redirects=False)
    assert good.status_code == 303 and good.headers["location"] == "/"
    assert "httponly" in good.headers["set-cookie"].lower()
    assert browser.get("/config").status_code == 200
    browser.get("/logout", follow_redirects=False)
    assert browser.get("/config").status_code == 401


def test_login_from_another_site_is_refused(auth_app):
    app, _, _, _ = auth_app
    browser = TestClient(app, base_url=LOCAL)
    response = browser.post("/login", data={"username": "alice", "password": "wonderland"},
                            headers={"Origin": EVIL}, follow_redirects=False)
    assert response.status_code == 403 and "set-cookie" not in response.headers


def test_forged_session_cookie_is_refused(auth_app):
    app, _, _, policy = auth_app
    browser = TestClient(app, base_url=LOCAL)
    forged = base64.urlsafe_b64encode(b"9999999999|user:root").decode().rstrip("=") + ".AAAA"
    browser.cookies.set("webui_session", forged)
    assert browser.get("/config").status_code == 401


def test_repeated_wrong_passwords_are_rate_limited(tmp_path):
    services = fake_services(tmp_path)
    policy = SecurityPolicy.create(secret_key_path=tmp_path / "k", api_users={"alice": "wonderland"})
    policy.limiter.max_failures = 3
    client = TestClient(create_app(services, with_ui=False, security=policy), base_url=LOCAL)
    statuses = [client.get("/sdapi/v1/sd-models", auth=("alice", f"guess{i}")).status_code for i in range(4)]
    assert statuses == [401, 401, 401, 429]
    blocked = client.get("/sdapi/v1/sd-models", auth=("alice", "wonderland"))
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1


# ---------------------------------------------------------------- gradio file access
@pytest.fixture(scope="module")
def outside_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("private") / "secret.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(path)
    return path


def test_gradio_file_routes_serve_nothing_outside_uploads(open_app, outside_image):
    _, services, client = open_app
    model = services.settings.model_folder("Stable-diffusion") / "tiny-a.ckpt"
    for target in ("/etc/passwd", str(outside_image), str(model), str(services.settings.secret_key_path)):
        for route in ("/gradio_api/file=", "/gradio_api/file/", "/file="):
            response = client.get(route + target)
            assert response.status_code in (403, 404), (route, target, response.status_code)
            assert b"root:" not in response.content and b"IHDR" not in response.content


def test_gradio_never_fetches_urls(open_app):
    _, _, client = open_app
    for url in ("http://169.254.169.254/latest/meta-data", "https://example.com/a.png", "HTTP://example.com/x"):
        for route in ("/gradio_api/file=", "/gradio_api/file/", "/gradio_api/proxy="):
            assert client.get(route + url).status_code == 403, (route, url)


def _queue_call(client, fn_index: int, data: list, session: str) -> dict:
    """Run a gradio event through /gradio_api/queue/join and return its process_completed message."""
    joined = client.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                        "event_data": None, "trigger_id": None})
    assert joined.status_code == 200, joined.text
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the event never completed")


def _fn_with_input(app, elem_id: str) -> int:
    blocks = gradio_blocks(app)
    return next(i for i, fn in blocks.fns.items() if any(getattr(c, "elem_id", None) == elem_id for c in fn.inputs))


def test_file_paths_posted_in_gradio_payloads_are_refused(open_app, outside_image):
    app, _, client = open_app
    png_info = _fn_with_input(app, "pnginfo_image")
    for number, target in enumerate(("/etc/passwd", str(outside_image))):
        payload = {"path": target, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"}
        message = _queue_call(client, png_info, [payload], f"paths{number}")
        assert message["success"] is False, message
        text = json.dumps(message)
        assert "root:" not in text and "255, 0, 0" not in text


# ---------------------------------------------------------------- limits
def test_chunked_giant_body_is_cut_off_while_reading(auth_app):
    app, services, _, _ = auth_app
    client = TestClient(app, base_url=LOCAL)

    def chunks(head=b"", tail=b""):
        yield head
        for _ in range(64):
            yield b"x" * 65536  # 4 MB in all, no Content-Length
        yield tail

    response = client.post("/sdapi/v1/txt2img", content=chunks(), auth=("alice", "wonderland"),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    head = (b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")
    response = client.post("/gradio_api/upload", content=chunks(head, b"\r\n--b--\r\n"), auth=("alice", "wonderland"),
                           headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413
    declared = client.post("/sdapi/v1/txt2img", content=b"x" * (2 << 20), auth=("alice", "wonderland"))
    assert declared.status_code == 413


def test_ten_megabyte_prompt_is_refused_before_it_queues(open_app):
    _, services, client = open_app
    before = len(services.queue.list(limit=500))
    huge = "a" * (10 << 20)
    assert client.post("/sdapi/v1/txt2img", json={"prompt": huge, "steps": 2}).status_code == 422
    assert client.post("/api/v1/jobs", json=job(huge)).status_code == 422
    assert len(services.queue.list(limit=500)) == before


def test_png_bomb_is_refused_before_decoding_through_the_api(open_app):
    _, _, client = open_app
    bomb = base64.b64encode(png_header_only(12000, 12000)).decode()
    for path, body in (("/sdapi/v1/img2img", {"init_images": [bomb], "steps": 2}),
                       ("/sdapi/v1/extra-single-image", {"image": bomb}), ("/sdapi/v1/png-info", {"image": bomb})):
        response = client.post(path, json=body)
        assert response.status_code == 413, (path, response.status_code)
        assert "pixels" in response.json()["detail"]


def test_png_bomb_is_refused_before_decoding_through_the_ui(open_app):
    app, services, client = open_app
    upload = client.post("/gradio_api/upload", files={"files": ("bomb.png", png_header_only(12000, 12000), "image/png")})
    assert upload.status_code == 200, upload.text
    path = upload.json()[0]
    assert path.startswith(os.environ["GRADIO_TEMP_DIR"]) and not path.startswith("/tmp/gradio/")
    extras = _fn_with_input(app, "pnginfo_image")
    message = _queue_call(client, extras, [{"path": path, "meta": {"_type": "gradio.FileData"}}], "bomb")
    assert message["success"] is False and "12000x12000" in json.dumps(message)


def test_hires_times_batch_cannot_escape_the_pixel_budget(open_app):
    _, _, client = open_app
    body = job(width=2048, height=2048, batch_size=16, enable_hr=True, hr_scale=2.0)
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 422 and response.json()["field"] == "batch_size"
    assert client.post("/sdapi/v1/txt2img", json={"steps": 151}).status_code == 422


# ---------------------------------------------------------------- private jobs
def test_jobs_are_private_to_the_client_that_made_them(open_app):
    app, services, _ = open_app
    alice, mallory = TestClient(app, base_url=LOCAL), TestClient(app, base_url=LOCAL)
    alice.get("/")
    mallory.get("/")
    job_id = alice.post("/api/v1/jobs", json=job("slow secret prompt", steps=40)).json()["id"]
    assert mallory.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert mallory.get(f"/api/v1/jobs/{job_id}/events").status_code == 404
    assert mallory.delete(f"/api/v1/jobs/{job_id}").status_code == 403
    assert mallory.post(f"/api/v1/jobs/{job_id}/interrupt").status_code == 403
    assert job_id not in json.dumps(mallory.get("/api/v1/jobs").json())
    assert job_id not in json.dumps(mallory.get("/api/v1/jobs", params={"owner": "client:"}).json())
    # A spoofed identity header is replaced by the server's own.
    spoofed = mallory.get(f"/api/v1/jobs/{job_id}", headers={"X-Webui-Owner": alice.get("/api/v1/jobs").json()
                                                             ["jobs"][0]["owner"], "X-Webui-Admin": "1"})
    assert spoofed.status_code == 404
    services.queue.wait(job_id, 0.5)  # running by now
    assert mallory.get("/sdapi/v1/progress").json()["state"]["job"] == ""
    mallory.post("/sdapi/v1/interrupt")
    assert services.queue.get(job_id).status.value == "running"
    assert "secret" not in json.dumps(mallory.get("/sdapi/v1/progress").json())
    alice.post("/sdapi/v1/interrupt")
    assert services.queue.wait(job_id, 10).status.value == "interrupted"
    assert alice.get(f"/api/v1/jobs/{job_id}").json()["status"] == "interrupted"


def test_signed_in_users_own_their_jobs_and_an_admin_sees_all(auth_app):
    app, services, _, _ = auth_app
    client = TestClient(app, base_url=LOCAL)
    job_id = client.post("/api/v1/jobs", json=job(), auth=("alice", "wonderland")).json()["id"]
    services.queue.wait(job_id, 10)
    assert client.get(f"/api/v1/jobs/{job_id}", auth=("bob", "builder")).status_code == 404
    assert client.get(f"/api/v1/jobs/{job_id}", auth=("alice", "wonderland")).status_code == 200
    assert client.get(f"/api/v1/jobs/{job_id}", auth=("root", "toor")).status_code == 200
    assert job_id in json.dumps(client.get("/api/v1/jobs", auth=("root", "toor")).json())
    assert job_id not in json.dumps(client.get("/api/v1/jobs", auth=("bob", "builder")).json())


def test_queue_tab_shows_only_ones_own_jobs(open_app):
    app, services, _ = open_app
    alice, mallory = TestClient(app, base_url=LOCAL), TestClient(app, base_url=LOCAL)
    alice.get("/")
    mallory.get("/")
    job_id = alice.post("/api/v1/jobs", json=job("alice's private prompt")).json()["id"]
    services.queue.wait(job_id, 10)
    refresh = next(i for i, fn in gradio_blocks(app).fns.items() if fn.name == "refresh")
    seen_by_alice = json.dumps(_queue_call(alice, refresh, [None, None], "qa"))
    seen_by_mallory = json.dumps(_queue_call(mallory, refresh, [None, None], "qm"))
    assert job_id in seen_by_alice and "private prompt" in seen_by_alice
    assert job_id not in seen_by_mallory and "private prompt" not in seen_by_mallory
    open_results = next(i for i, fn in gradio_blocks(app).fns.items() if fn.name == "open_job")
    assert "Choose a finished job first" in json.dumps(_queue_call(mallory, open_results, [job_id], "qo"))


# ---------------------------------------------------------------- bad values never persist
def test_nan_option_is_refused_and_options_stay_readable(open_app):
    _, _, client = open_app
    response = client.post("/sdapi/v1/options", content=b'{"ESRGAN_tile": NaN}',
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert client.get("/sdapi/v1/options").status_code == 200


def test_nan_and_lone_surrogates_never_reach_the_job_list(open_app):
    _, services, client = open_app
    nan = client.post("/api/v1/jobs", content=b'{"kind": "txt2img", "request": {"prompt": "x", "cfg_scale": NaN}}',
                      headers={"Content-Type": "application/json"})
    assert nan.status_code == 422
    surrogate = client.post("/api/v1/jobs", content=b'{"kind": "txt2img", "request": {"prompt": "a \\ud800 b"}}',
                            headers={"Content-Type": "application/json"})
    assert surrogate.status_code == 422 and surrogate.json()["field"] == "prompt"
    assert client.get("/api/v1/jobs").status_code == 200


def test_an_unreadable_stored_record_is_skipped_not_fatal(open_app):
    _, services, client = open_app
    job_id = client.post("/api/v1/jobs", json=job()).json()["id"]
    services.queue.wait(job_id, 10)
    store = services.queue._store
    with store._lock:
        store._db.execute("INSERT INTO jobs (id, kind, owner, status, created, finished, request) "
                          "VALUES ('broken', 'txt2img', 'x', 'succeeded', 1, 2, '{not json')")
    listed = client.get("/api/v1/jobs")
    assert listed.status_code == 200 and job_id in json.dumps(listed.json())


# ---------------------------------------------------------------- messages are text
def test_failed_job_messages_are_escaped_in_the_ui(open_app):
    from webui.ui import common

    text = common.markdown_text('<img src="http://evil.example/t.png"> [click](http://evil.example) **x**')
    assert "<img" not in text and "](" not in text and "**" not in text


def test_scripts_without_cookies_keep_their_jobs_but_never_see_a_browsers(open_app):
    app, services, _ = open_app
    browser = TestClient(app, base_url=LOCAL)
    browser.get("/")
    browser_job = browser.post("/api/v1/jobs", json=job("browser's own")).json()["id"]
    script = TestClient(app, base_url=LOCAL, cookies=None)
    script_job = script.post("/api/v1/jobs", json=job("script")).json()["id"]
    script.cookies.clear()
    assert script.get(f"/api/v1/jobs/{script_job}").status_code == 200
    assert script.get(f"/api/v1/jobs/{browser_job}").status_code == 404
    assert script.delete(f"/api/v1/jobs/{browser_job}").status_code == 403
    assert browser.get(f"/api/v1/jobs/{script_job}").status_code == 404


def test_gradio_uploads_have_a_size_cap(tmp_path):
    services = fake_services(tmp_path, extra={"ui_max_upload_bytes": 4096})
    client = TestClient(create_app(services), base_url=LOCAL)
    small = client.post("/gradio_api/upload", files={"files": ("a.txt", b"x" * 100, "text/plain")})
    assert small.status_code == 200
    big = client.post("/gradio_api/upload", files={"files": ("b.txt", b"x" * 10000, "text/plain")})
    assert big.status_code == 413


def test_a_signed_in_user_cannot_batch_process_the_shared_outputs_folder(auth_app):
    app, services, _, _ = auth_app
    alice = TestClient(app, base_url=LOCAL)
    alice.post("/login", data={"username": "alice", "password": "wonderland"}, follow_redirects=False)
    blocks = gradio_blocks(app)
    run = next(i for i, fn in blocks.fns.items() if fn.name == "run_extras")
    source = blocks.fns[run].inputs[0]._id  # the gr.State naming the chosen source tab
    folder_tab = [i for i, fn in blocks.fns.items() if [c._id for c in fn.outputs] == [source]][2]
    _queue_call(alice, folder_tab, [], "dir")
    data = [None if getattr(c, "elem_id", None) is None else c.value for c in blocks.fns[run].inputs]
    data[[getattr(c, "elem_id", None) for c in blocks.fns[run].inputs].index("extras_batch_input_dir")] = str(
        services.settings.outdir)
    message = json.dumps(_queue_call(alice, run, data, "dir"))
    assert "Only an admin may process a folder" in message
