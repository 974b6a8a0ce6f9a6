"""The model clients share one TLS context per library, and it verifies exactly as the library's own default.

Each provider used to let its client build the library's default context, CA
bundle and all, in every worker (20 ms each); now one is made per process
(`workers/providers/tls.py`). These tests hold the promise that nothing about
verification changed: a real HTTPS server on 127.0.0.1 with a self-signed
certificate is refused by both clients, and accepted once SSL_CERT_FILE names
that certificate, as the libraries' defaults do.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from harness import fresh_python


class _NotFound(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        body = json.dumps({"error": "no such model"}).encode()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTPS server (self-signed certificate for 127.0.0.1) that answers 404: its URL and its certificate."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


CALLS = """
import asyncio, json, sys
from protocol.specs import LLMSpec
from workers.providers import make_provider, preload
import workers.providers.ollama as via_ollama, workers.providers.openai as via_openai

url = sys.argv[1]
preload([["ollama", "ollama"], ["openai", "openai"]])


def outcome(exc):
    text = f"{exc!r} {exc.__cause__!r} {exc.__context__!r}"
    return "certificate refused" if "CERTIFICATE_VERIFY_FAILED" in text else type(exc).__name__


async def main():
    ollama = make_provider(LLMSpec(provider="ollama", host=url, model="m"))
    openai = make_provider(LLMSpec(provider="openai", host=url, base_url=url + "/v1", model="m", api="openai"))
    shared = [ollama.clients[url]._client._transport._pool._ssl_context is via_ollama.TLS.get(),
              list(openai.clients.values())[0]._client._transport._pool._ssl_context is via_openai.TLS.get()]
    said = []
    try:
        await ollama.clients[url].chat(model="m", messages=[{"role": "user", "content": "hi"}])
    except Exception as exc:
        said.append(outcome(exc))
    try:
        await list(openai.clients.values())[0].chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    except Exception as exc:
        said.append(outcome(exc))
    print(json.dumps({"shared": shared, "said": said}))

asyncio.run(main())
"""


def _calls(url: str, **env: str) -> dict[str, list]:
    environment = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    found: dict[str, list] = fresh_python(CALLS, url, env={**environment, **env})
    return found


@pytest.mark.e2e  # a fresh interpreter per case: the TLS context is made once per process, from its environment
def test_an_untrusted_certificate_is_refused_by_both_clients_on_the_shared_context(https_server) -> None:
    url, _ = https_server
    found = _calls(url)
    assert found == {"shared": [True, True], "said": ["certificate refused", "certificate refused"]}


@pytest.mark.e2e
def test_ssl_cert_file_is_honoured_as_by_the_libraries_own_default(https_server) -> None:
    url, cert = https_server
    found = _calls(url, SSL_CERT_FILE=str(cert))
    assert found["shared"] == [True, True]
    assert found["said"] == ["ResponseError", "NotFoundError"]  # through TLS, to the server's 404


def test_a_library_that_cannot_make_the_shared_context_is_asked_once_and_its_clients_make_their_own() -> None:
    from workers.providers.tls import SharedContext

    calls = []

    def failing() -> ssl.SSLContext:
        calls.append(1)
        raise ssl.SSLError("no CA bundle here")

    shared = SharedContext(failing)
    assert [shared.client_arguments() for _ in range(3)] == [{}, {}, {}]
    assert calls == [1]
    made = SharedContext(ssl.create_default_context)
    assert made.get() is made.get() and made.client_arguments() == {"verify": made.get()}
