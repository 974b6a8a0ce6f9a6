"""What the Agent class layer costs per cycle, next to what a cycle must pay anyway.

Since custom agents, a worker's cycle is `await agent.cycle(k)`: the built-in
chat agent builds its request from `self.messages` (a copy), calls the
provider through `self.chat` (counted into the cycle's usage), and the loop
checks the returned Step. The floor is the old loop's work for the same cycle:
the provider called directly on `messages + prompt`. Both use a provider that
answers at once, so only the Python around the call is measured. For scale, the
last column is one checkpoint save of the same conversation (gzip, fsync of
file and folder), which every cycle pays after its call.

    python benchmarks/bench_agent_layer.py [--sizes 10,200,2000] [--cycles 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.agent import AgentContext, Usage  # noqa: E402
from workers.agent_loop import as_step  # noqa: E402
from workers.chat_agent import ChatAgent  # noqa: E402
from protocol.checkpoints import CheckpointStore  # noqa: E402
from workers.providers import Reply  # noqa: E402

REPLY = "x" * 300


class InstantProvider:
    async def chat(self, messages: list[dict], *, cycle: int) -> Reply:
        return Reply(content=REPLY, tokens={"prompt": 10, "completion": 10}, cost_usd=0.0001, model_ms=1.0)

    async def aclose(self) -> None:
        return None


def conversation(size: int) -> list[dict[str, Any]]:
    turns = [{"role": "user" if i % 2 else "assistant", "content": REPLY} for i in range(size - 2)]
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "A task."}, *turns]


async def floor_cycle(provider: InstantProvider, messages: list[dict], k: int, max_cycles: int) -> None:
    prompt = [{"role": "user", "content": f"Continue with step {k} of {max_cycles}; do not repeat earlier steps."}]
    reply = await provider.chat(messages + prompt, cycle=k)
    messages.extend(prompt + [{"role": "assistant", "content": reply.content}])


async def agent_cycle(agent: ChatAgent, context: AgentContext, k: int) -> None:
    context.cycle, context.usage = k, Usage()
    step = as_step(await agent.cycle(k))
    assert step is not None
    context.messages.extend(step.turns())


async def per_cycle_us(size: int, cycles: int) -> tuple[float, float]:
    """Median microseconds per cycle: (floor, agent); each cycle starts from a `size`-message conversation."""
    provider = InstantProvider()
    floor: list[float] = []
    layered: list[float] = []
    for k in range(2, cycles + 2):
        messages = conversation(size)
        began = time.perf_counter()
        await floor_cycle(provider, messages, k, cycles + 2)
        floor.append(time.perf_counter() - began)

        context = AgentContext(name="a", task="A task.", max_cycles=cycles + 2, params={}, state={},
                               messages=conversation(size), provider=provider)
        agent = ChatAgent()
        agent.attach(context)
        began = time.perf_counter()
        await agent_cycle(agent, context, k)
        layered.append(time.perf_counter() - began)
    return statistics.median(floor) * 1e6, statistics.median(layered) * 1e6


def save_ms(size: int, repeat: int = 15) -> float:
    with tempfile.TemporaryDirectory() as folder:
        store = CheckpointStore(folder, "a", keep=3)
        store.open_for_writing()
        messages = conversation(size)
        times = []
        for cycle in range(1, repeat + 1):
            began = time.perf_counter()
            store.save(cycle=cycle, status="running", messages=messages, extra={"agent_class": "x:Y", "state": {}})
            times.append(time.perf_counter() - began)
        return statistics.median(times) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,200,2000", help="conversation sizes in messages")
    parser.add_argument("--cycles", type=int, default=300)
    args = parser.parse_args()
    print("| messages | floor: provider direct, µs | through ChatAgent, µs | added µs | checkpoint save, ms | added / save |")
    print("| --: | --: | --: | --: | --: | --: |")
    for size in (int(s) for s in args.sizes.split(",")):
        floor, layered = asyncio.run(per_cycle_us(size, args.cycles))
        save = save_ms(size)
        added = layered - floor
        print(f"| {size} | {floor:.1f} | {layered:.1f} | {added:.1f} | {save:.2f} | {added / (save * 1000.0):.1%} |")


if __name__ == "__main__":
    main()
