"""One TLS context per model client library, made once, in the forkserver, for every worker.

ollama's and openai's clients each build an httpx client, and an httpx client
builds its default TLS context when it is made, whatever its URL: it loads
every certificate of the CA bundle. That was 20 ms of CPU and 0.8 MB of
memory per worker (ollama.AsyncClient for an http:// host: 20.3 ms, with a
context given: 1.4 ms; openai.AsyncOpenAI 21 ms against 2 ms), spent by
every agent as it starts: 20 s of CPU for a team of 1000.

The context made here is the one the library would have made (its own
`create_ssl_context()`: its CA bundle, SSL_CERT_FILE and SSL_CERT_DIR), so
verification is unchanged; only it is made once. A context is meant to be
shared by connections, and a forked worker has its own copy of it. If the
library cannot make one here, its clients make their own as before.
"""

from __future__ import annotations

import ssl
from typing import Any, Callable, Optional


class SharedContext:
    """The default TLS context of one client library, made on first use and kept."""

    def __init__(self, factory: Callable[[], ssl.SSLContext]) -> None:
        self._factory: Optional[Callable[[], ssl.SSLContext]] = factory  # None once it has been called
        self._context: Optional[ssl.SSLContext] = None

    def get(self) -> Optional[ssl.SSLContext]:
        """The context; None if the library could not make one (its clients then make their own)."""
        if self._factory is not None:
            factory, self._factory = self._factory, None  # tried once: a failure is not paid again per client
            try:
                self._context = factory()
            except Exception:  # noqa: BLE001 - no sharing, nothing worse: each client tries for itself
                pass
        return self._context

    def client_arguments(self) -> dict[str, Any]:
        """`verify=` for the library's client, or nothing."""
        context = self.get()
        return {} if context is None else {"verify": context}
