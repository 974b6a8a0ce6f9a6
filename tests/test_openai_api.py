"""The embedded model server speaks OpenAI's API too: /v1/models and /v1/chat/completions, against the real model."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from typing import Any, Iterator

import openai
import pytest

from bundled_model import NAME, BundledModel, needs_model

pytestmark = [needs_model, pytest.mark.e2e]  # loads the real model: seconds


@pytest.fixture(scope="module")
def model() -> Iterator[BundledModel]:
    with BundledModel() as served:
        yield served


def _post(model: BundledModel, body: Any, path: str = "/v1/chat/completions") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", model.httpd.server_address[1], timeout=60)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _events(raw: bytes) -> list[str]:
    """The `data:` payloads of a server-sent event stream, in order."""
    blocks = raw.decode().split("\n\n")
    assert blocks[-1] == "", "the stream ends with a blank line"
    assert all(block.startswith("data: ") for block in blocks[:-1]), raw[:200]
    return [block[len("data: "):] for block in blocks[:-1]]


def _ask(max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {"model": NAME, "messages": [{"role": "system", "content": "You are brief."},
                                        {"role": "user", "content": "Name three colours."}],
            "max_tokens": max_tokens, "temperature": 0, **extra}


def test_the_models_list_names_the_bundled_model(model: BundledModel) -> None:
    async def ask() -> tuple[list[str], str]:
        client = openai.AsyncOpenAI(base_url=model.base_url, api_key="unused", max_retries=0)
        try:
            listed = [m.id async for m in client.models.list()]
            one = await client.models.retrieve(NAME)
            return listed, one.id
        finally:
            await client.close()

    assert asyncio.run(ask()) == ([NAME], NAME)


def test_a_streamed_completion_sends_the_role_the_text_the_finish_the_usage_then_done(model: BundledModel) -> None:
    status, headers, raw = _post(model, _ask(8, stream=True, stream_options={"include_usage": True}))
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    payloads = _events(raw)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == NAME for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip()
    finish, usage = chunks[-2], chunks[-1]
    assert finish["choices"][0]["finish_reason"] == "length" and finish["timings"]["predicted_ms"] > 0
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 8
    assert usage["usage"]["prompt_tokens"] > 0
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + 8
    assert all(c["usage"] is None for c in chunks[:-1])


def test_without_include_usage_the_stream_has_no_usage_chunk(model: BundledModel) -> None:
    status, _, raw = _post(model, _ask(4, stream=True))
    payloads = _events(raw)
    assert status == 200 and payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["choices"] and "usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_a_whole_completion_is_one_object_with_its_usage(model: BundledModel) -> None:
    async def ask() -> Any:
        client = openai.AsyncOpenAI(base_url=model.base_url, api_key="unused", max_retries=0)
        try:
            return await client.chat.completions.create(**_ask(6))
        finally:
            await client.close()

    reply = asyncio.run(ask())
    assert reply.object == "chat.completion" and reply.model == NAME
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content.strip()
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 6


@pytest.mark.parametrize("body,status,param", [
    (b"{not json", 400, None),
    (b"[1, 2]", 400, None),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, 404, "model"),
    ({"model": NAME, "messages": []}, 400, "messages"),
    ({"model": NAME, "messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages[0].role"),
    ({"model": NAME, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "messages[0].content"),
    ({"model": NAME, "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, 400, "temperature"),
    ({"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400, "max_tokens"),
    ({"model": NAME, "messages": [{"role": "user", "content": "hi"}], "n": 3}, 400, "n"),
], ids=["bad-json", "not-an-object", "unknown-model", "no-messages", "bad-role", "image-part", "bad-temperature",
        "zero-max-tokens", "n-above-1"])
def test_bad_requests_get_openais_error_shape(model: BundledModel, body: Any, status: int, param: Any) -> None:
    got, headers, raw = _post(model, body)
    error = json.loads(raw)["error"]
    assert got == status and headers["Content-Type"].startswith("application/json")
    assert error["message"] and error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert model.backend.streaming == 0


def test_unknown_routes_and_models_are_404_in_openais_shape(model: BundledModel) -> None:
    status, _, raw = _post(model, {}, "/v1/embeddings")
    assert status == 404 and json.loads(raw)["error"]["type"] == "invalid_request_error"
    conn = http.client.HTTPConnection("127.0.0.1", model.httpd.server_address[1], timeout=10)
    conn.request("GET", "/v1/models/gpt-4o")
    response = conn.getresponse()
    assert response.status == 404 and json.loads(response.read())["error"]["code"] == "model_not_found"
    conn.close()


def test_the_ollama_api_is_still_served_beside_it(model: BundledModel) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", model.httpd.server_address[1], timeout=10)
    conn.request("GET", "/api/tags")
    tags = json.loads(conn.getresponse().read())
    conn.close()
    assert [m["name"] for m in tags["models"]] == [NAME]


def test_a_client_that_disconnects_mid_stream_stops_the_generation(model: BundledModel) -> None:
    done_before = len(model.backend.finished)
    cut_before = model.backend.cut_off
    body = json.dumps(_ask(2000, stream=True)).encode()
    with socket.create_connection(("127.0.0.1", model.httpd.server_address[1]), timeout=60) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        seen = b""
        while seen.count(b"data: ") < 4:  # the role chunk and a few pieces: generation is under way
            data = sock.recv(65536)
            assert data, "the server closed the stream early"
            seen += data
    deadline = time.monotonic() + 60
    while len(model.backend.finished) == done_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert model.backend.cut_off == cut_before + 1
    assert model.backend.finished[-1].completion_tokens < 2000  # stopped long before its limit
