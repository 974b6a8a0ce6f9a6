"""The part of a conversation that is sent: what fits in the model's context, the checkpoint keeps the rest."""

from __future__ import annotations

from typing import Any

DEFAULT_NUM_CTX = 2048  # Ollama's own default, and the embedded server's per slot, when options.num_ctx is not set
DEFAULT_REPLY_RESERVE = 256  # tokens kept free for the reply when its length is unbounded
CHARS_PER_TOKEN = 4  # a rough, tokenizer-free estimate; errs on the side of trimming


def estimate_tokens(message: dict[str, Any]) -> int:
    calls = message.get("tool_calls")  # a tool call's name and arguments are sent too
    return (len(str(message.get("content", ""))) + (len(str(calls)) if calls else 0)) // CHARS_PER_TOKEN + 4  # + role and framing


def context_budget(options: dict[str, Any], reply_keys: tuple[str, ...]) -> int:
    """Tokens the conversation may take: `num_ctx` less the reply's cap (the first of `reply_keys` set)."""
    num_ctx = int(options.get("num_ctx") or DEFAULT_NUM_CTX)
    for key in reply_keys:
        cap = int(options.get(key) or -1)
        if cap > 0:
            return num_ctx - cap
    return num_ctx - DEFAULT_REPLY_RESERVE


def fit_context(messages: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """The system prompt, the task and the newest turns that fit in `budget` tokens.

    The first two messages (system prompt, task) always stay: without them the
    model no longer knows what it is doing. Then turns are taken from the newest
    back while they fit; the checkpoint keeps the full history regardless.
    """
    head = messages[:2]
    rest = messages[2:]
    left = budget - sum(estimate_tokens(m) for m in head)
    kept: list[dict[str, Any]] = []
    for message in reversed(rest):
        cost = estimate_tokens(message)
        if cost > left and kept:
            break
        kept.append(message)  # the newest turn is always sent, even if alone it is too long
        left -= cost
    while len(kept) > 1 and kept[-1].get("role") == "tool":
        kept.pop()  # a tool's result without the call that asked for it is refused by the APIs
    return head + kept[::-1]
