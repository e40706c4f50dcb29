"""The HTTP service on a real uvicorn server on loopback: every endpoint, its errors, its metrics."""

import base64
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from _serve_helpers import ThreadedServer, validator_jpeg
from roadwork.config import load_config
from roadwork.decode import decode_bytes
from roadwork.engine import Engine
from roadwork.serve.batcher import Batcher
from roadwork.serve.capture import read_index
from roadwork.serve.http import create_app

pytestmark = pytest.mark.timeout(120)
KEY = "s3cret-key"


def _cfg(tiny_vit_dir, **serve):
    # Two tiers on the same tiny model; the first is unsure about everything, so every image
    # escalates and the escalation metrics have something to count.
    return load_config(overrides={"tiers": [{"name": "fast", "model": str(tiny_vit_dir), "band": (0.0, 1.0)},
                                            {"name": "slow", "model": str(tiny_vit_dir)}],
                                  "serve": {"max_images": 4, "cache_size": 0, **serve}})  # engine calls counted


def _wait_ready(url: str) -> None:
    end = time.monotonic() + 60
    while httpx.get(f"{url}/readyz").status_code != 200:
        assert time.monotonic() < end, "server never became ready"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tiny_vit_dir, tmp_path_factory):
    cfg = _cfg(tiny_vit_dir)
    cfg.capture.enabled, cfg.capture.dir, cfg.capture.band = True, str(tmp_path_factory.mktemp("cap")), (0.0, 1.0)
    app = create_app(Engine.from_config(cfg), cfg)
    with ThreadedServer(app) as srv:
        _wait_ready(srv.url)
        srv.app, srv.cfg = app, cfg
        yield srv


@pytest.fixture(scope="module")
def reference(tiny_vit_dir):
    return Engine.from_config(_cfg(tiny_vit_dir))


@pytest.fixture(scope="module")
def jpegs(street_images_module):
    return [validator_jpeg(im) for im in street_images_module]


@pytest.fixture(scope="module")
def street_images_module():
    from conftest import EXAMPLES
    from PIL import Image

    return [Image.open(p).convert("RGB") for p in sorted(EXAMPLES.glob("*.jpg"))]


def _metrics(url: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_health_and_readiness(server):
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    r = httpx.get(f"{server.url}/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready", "tiers": ["fast", "slow"]}


def test_predict_json_matches_the_engine(server, reference, jpegs):
    r = httpx.post(f"{server.url}/v1/predict", json={"images": [base64.b64encode(j).decode() for j in jpegs]})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = reference.predict([decode_bytes(j) for j in jpegs])
    assert [x["index"] for x in body["results"]] == [0, 1, 2]
    for got, want in zip(body["results"], expected):
        assert got["prob"] == pytest.approx(want.prob, abs=1e-6)
        assert got["tier"] == "slow" and got["label"] == int(want.prob > 0.5)
        assert got["label_name"] == ("roadwork" if got["label"] else "none")
        assert 0 < got["latency_ms"] <= body["latency_ms"]
        assert got["timed_out"] is False


def test_a_20_mib_4000x3000_photo_gets_the_engines_probability(server, reference, phone_jpeg):
    r = httpx.post(f"{server.url}/v1/predict", files=[("files", ("phone.jpg", phone_jpeg, "image/jpeg"))],
                   timeout=30)
    assert r.status_code == 200, r.text
    got = r.json()["results"][0]
    assert not got["timed_out"] and got["prob"] == pytest.approx(reference.predict([decode_bytes(phone_jpeg)])[0].prob,
                                                                 abs=1e-6)


def test_predict_multipart_equals_json(server, jpegs):
    files = [("files", (f"{i}.jpg", j, "image/jpeg")) for i, j in enumerate(jpegs)]
    multi = httpx.post(f"{server.url}/v1/predict", files=files)
    js = httpx.post(f"{server.url}/v1/predict", json={"images": [base64.b64encode(j).decode() for j in jpegs]})
    assert multi.status_code == 200, multi.text
    assert [x["prob"] for x in multi.json()["results"]] == pytest.approx([x["prob"] for x in js.json()["results"]])


def test_one_bad_image_refuses_the_request_naming_it(server, jpegs):
    good = base64.b64encode(jpegs[0]).decode()
    r = httpx.post(f"{server.url}/v1/predict", json={"images": [good, "not base64!", good, ""]})
    assert r.status_code == 422
    errs = r.json()["errors"]
    assert [e["index"] for e in errs] == [1, 3]
    assert errs[0]["input"] == "images[1]" and "base64" in errs[0]["reason"]
    assert "empty" in errs[1]["reason"]
    r = httpx.post(f"{server.url}/v1/predict", files=[("files", ("a.jpg", jpegs[0], "image/jpeg")),
                                                      ("files", ("notes.txt", b"hello", "text/plain"))])
    assert r.status_code == 422 and r.json()["errors"][0]["index"] == 1
    assert "notes.txt" in r.json()["errors"][0]["input"]


@pytest.mark.parametrize("kwargs,status,needle", [
    ({"content": b"{nope", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ({"content": b"abc", "headers": {"content-type": "text/plain"}}, 415, "unsupported content type"),
    ({"json": {"images": ["a"] * 5}}, 413, "5 images is over the 4-image limit"),
    ({"json": {"images": []}}, 422, "at least 1"),
    ({"json": {"pictures": ["a"]}}, 422, "images"),
    ({"json": {"images": [1, 2]}}, 422, "string"),
    ({"files": [("field", (None, "value"))]}, 422, "no file parts"),
    ({"data": {"field": "value"}}, 415, "application/x-www-form-urlencoded"),
])
def test_malformed_requests_get_a_clear_4xx(server, kwargs, status, needle):
    r = httpx.post(f"{server.url}/v1/predict", **kwargs)
    assert r.status_code == status
    assert needle in r.json()["detail"]


def test_metrics_count_requests_batches_and_escalations(server, jpegs):
    before = _metrics(server.url)
    r = httpx.post(f"{server.url}/v1/predict", json={"images": [base64.b64encode(j).decode() for j in jpegs]})
    assert r.status_code == 200
    httpx.post(f"{server.url}/v1/predict", json={"images": ["%%%"]})
    after = _metrics(server.url)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("roadwork_requests_total", frontend="http", outcome="ok") == 1
    assert delta("roadwork_images_total", frontend="http") == 3
    assert delta("roadwork_errors_total", frontend="http", reason="bad_image") == 1
    assert delta("roadwork_tier_escalations_total", tier="fast") == 3
    assert delta("roadwork_answers_by_tier_total", tier="slow") == 3
    assert delta("roadwork_batch_size_sum") == 3 and delta("roadwork_batch_size_count") >= 1
    assert delta("roadwork_request_latency_seconds_count", frontend="http") == 2


def test_uncertain_http_inputs_are_captured(server, jpegs):
    r = httpx.post(f"{server.url}/v1/predict", files=[("files", ("x.jpg", jpegs[2], "image/jpeg"))])
    assert r.status_code == 200
    server.app.state.capture.flush()
    rows = [x for x in read_index(server.cfg.capture.dir).to_pylist() if x["source"] == "http"]
    assert rows and rows[-1]["prob"] == pytest.approx(r.json()["results"][0]["prob"])
    assert rows[-1]["file"].endswith(".jpg")


def test_docs_work_offline(server):
    page = httpx.get(f"{server.url}/docs")
    assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn.jsdelivr.net" not in page.text  # nothing fetched from outside
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r = httpx.get(f"{server.url}/docs-assets/{asset}")
        assert r.status_code == 200 and len(r.content) > 10_000


def test_openapi_is_published(server):
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/v1/predict", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    post = spec["paths"]["/v1/predict"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"200", "401", "413", "422", "504"} <= set(post["responses"])
    assert "PredictResponse" in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


def test_api_key_is_required_when_configured(tiny_vit_dir, jpegs):
    cfg = _cfg(tiny_vit_dir, api_key=KEY, warmup=False)
    with ThreadedServer(create_app(Engine.from_config(cfg), cfg)) as srv:
        body = {"images": [base64.b64encode(jpegs[0]).decode()]}
        assert httpx.post(f"{srv.url}/v1/predict", json=body).status_code == 401
        assert httpx.post(f"{srv.url}/v1/predict", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
        assert httpx.post(f"{srv.url}/v1/predict", json=body, headers={"X-API-Key": KEY}).status_code == 200
        assert httpx.post(f"{srv.url}/v1/predict", json=body,
                          headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert httpx.get(f"{srv.url}/healthz").status_code == 200  # probes need no key


def test_deadline_and_shutdown_answer_5xx(tiny_vit_dir, jpegs):
    body = {"images": [base64.b64encode(jpegs[0]).decode()]}
    cfg = _cfg(tiny_vit_dir, deadline_s=0.001, warmup=False)
    with ThreadedServer(create_app(Engine.from_config(cfg), cfg)) as srv:
        r = httpx.post(f"{srv.url}/v1/predict", json=body)
        assert r.status_code == 504 and "deadline" in r.json()["detail"]
    # A batcher that has been shut down: not ready, and new work is refused with 503.
    cfg = _cfg(tiny_vit_dir)
    engine = Engine.from_config(cfg)
    batcher = Batcher(engine).start(warmup=False)
    batcher.stop()
    with ThreadedServer(create_app(engine, cfg, batcher=batcher)) as srv:
        r = httpx.get(f"{srv.url}/readyz")
        assert r.status_code == 503 and r.json()["status"] == "shutting down"
        assert httpx.post(f"{srv.url}/v1/predict", json=body).status_code == 503
