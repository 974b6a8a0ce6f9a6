"""What metrics and traces cost the supervisor: a 32-agent scripted team, both on against both off.

    .venv/bin/python benchmarks/bench_observe.py              # 3 rounds of off/on, interleaved
    .venv/bin/python benchmarks/bench_observe.py --rounds 5 --cycles 200

Each round runs the same team twice, once plain and once with
`metrics: {listen: 127.0.0.1:0}` (scraped every `--scrape-every` seconds,
default 5: Prometheus's default is a minute, 15 s is common; one scrape of 32
agents renders about 150 KB) and `traces: {endpoint: ...}` (a local OTLP/HTTP receiver in this
process that accepts and counts); the order alternates between rounds, so a
machine that slows down over time burdens both alike.

Measured over the steady part of each run, from every worker started to 90% of
the cycles done: the events the supervisor wrote per second, and the CPU time
of the supervisor process itself (its workers excluded) per event, which is
where the sinks' cost shows: the agents set the pace, so a supervisor with CPU
to spare writes the same events per second either way, and only its CPU per
event (or, on a saturated machine, the rate) tells the difference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psutil

from harness import TeamRun, agents, named

AGENTS = 32
LATENCY = 0.05


class Receiver:
    """An OTLP/HTTP endpoint that accepts every export (an empty ExportTraceServiceResponse is zero bytes)."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests += 1
                receiver.bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


class Scraper:
    """GET /metrics every `every` seconds until stopped; counts the scrapes and keeps the last page's size."""

    def __init__(self, url: str, every: float) -> None:
        self.url = url
        self.every = every
        self.scrapes = 0
        self.size = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as page:
                    self.size = len(page.read())
                self.scrapes += 1
            except OSError:
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def one_run(observed: bool, cycles: int, receiver: Receiver, scrape_every: float) -> dict[str, float]:
    config: dict[str, Any] = {
        "team": "bench-observe",
        "llm": {"provider": "scripted", "latency": LATENCY},
        "agents": agents(AGENTS, task="count", max_cycles=cycles),
    }
    if observed:
        config["metrics"] = {"listen": "127.0.0.1:0"}
        config["traces"] = {"endpoint": receiver.url}
    sent_before = receiver.requests
    with TeamRun(config, "bench-observe-") as run:
        scraper = None
        if observed:
            (serving,) = run.wait_for(lambda ev: named(ev, "metrics_serving"), 60, "metrics_serving")
            scraper = Scraper(serving["url"], scrape_every)
        run.wait_started(AGENTS)
        supervisor = psutil.Process(run.pid)
        began, cpu_began, events_began = time.time(), cpu_seconds(supervisor), len(run.events)
        target = int(0.9 * AGENTS * cycles)
        run.wait_for(lambda ev: len(named(ev, "cycle_completed")) >= target, 600, f"{target} cycles", poll=0.01)
        ended, cpu_ended, events_ended = time.time(), cpu_seconds(supervisor), len(run.events)
        code = run.wait_exit(120)
        if scraper is not None:
            scraper.stop()
        if code != 0:
            raise run.failed(f"the run exited {code}")
        if observed and named(run.events, "traces_export_failed"):
            raise run.failed("the traces did not reach the receiver")
        events = events_ended - events_began
        seconds = ended - began
        return {
            "events_per_s": events / seconds,
            "cpu_us_per_event": (cpu_ended - cpu_began) / events * 1e6,
            "busy": (cpu_ended - cpu_began) / seconds,
            "exports": receiver.requests - sent_before,
            "scrapes": scraper.scrapes if scraper is not None else 0,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=200, help="cycles per agent per run (default 200: ~10 s)")
    parser.add_argument("--scrape-every", type=float, default=5.0, metavar="S", help="seconds between scrapes")
    args = parser.parse_args()
    receiver = Receiver()
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for round_ in range(args.rounds):
        order = (False, True) if round_ % 2 == 0 else (True, False)
        for observed in order:
            result = one_run(observed, args.cycles, receiver, args.scrape_every)
            results[observed].append(result)
            print(f"round {round_ + 1} {'on ' if observed else 'off'}: {result['events_per_s']:.0f} events/s, "
                  f"{result['cpu_us_per_event']:.0f} us CPU/event", flush=True)

    def median(observed: bool, key: str) -> float:
        return statistics.median(r[key] for r in results[observed])

    print()
    print(f"{AGENTS} scripted agents, {LATENCY * 1000:.0f} ms cycles, {args.cycles} cycles each; "
          f"medians of {args.rounds} runs per row, interleaved; /metrics scraped every {args.scrape_every:g} s")
    print(f"{'metrics + traces':<18} {'events/s':>9} {'vs off':>7} {'supervisor CPU/event':>21} {'vs off':>7} "
          f"{'supervisor busy':>16} {'exports':>8} {'scrapes':>8}")
    for observed in (False, True):
        rate, cpu = median(observed, "events_per_s"), median(observed, "cpu_us_per_event")
        print(f"{'on' if observed else 'off (floor)':<18} {rate:>9.0f} {rate / median(False, 'events_per_s'):>6.0%} "
              f"{cpu:>18.0f} us {cpu / median(False, 'cpu_us_per_event'):>6.0%} {median(observed, 'busy'):>15.0%} "
              f"{median(observed, 'exports'):>8.0f} {median(observed, 'scrapes'):>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
