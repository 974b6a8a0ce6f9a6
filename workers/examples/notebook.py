"""An example custom agent: works through its task keeping short notes, and knows when to stop.

It shows the three things a custom agent adds to the built-in chat agent:

* Its own context. Each call sends the task and the latest notes, not the
  whole transcript, so the prompt of cycle 200 is as small as that of cycle 2.
* State that survives. `notes` (one line per step) and `stale` (steps in a row
  that added nothing new) live in `self.state`; they reach disk with each
  cycle's reply, so an interrupted run resumes with exactly the notes it had.
* Its own stop. When `max_stale` steps in a row only repeat an earlier note,
  more cycles would be money spent on nothing: the agent asks to stop
  (a GRACEFUL, PROGRAMMATIC interrupt) and a person can look before running it
  again.

Config (see `configs/team-custom.yaml`)::

    agents:
      - name: planner
        agent: workers.examples.notebook:Notebook
        params: {recent_notes: 8, max_stale: 2}
"""

from __future__ import annotations

import re

from workers.agent import Agent, Step

NOTE_CHARS = 200
_LEADER = re.compile(r"^\s*(?:[#>*\-]+|\d+[.)]|step\s+\d+\s*[:.)-])\s*", re.IGNORECASE)


def note_of(reply: str) -> str:
    """The first non-empty line of a reply, without list or heading marks, cut to NOTE_CHARS."""
    for line in reply.splitlines():
        text = _LEADER.sub("", line).strip()
        if text:
            return text[:NOTE_CHARS]
    return ""


def _same(note: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", note.lower()).split())


class Notebook(Agent):
    def setup(self) -> None:
        self.state.setdefault("notes", [])
        self.state.setdefault("stale", 0)

    def prompt(self, k: int) -> str:
        recent = self.state["notes"][-int(self.params.get("recent_notes", 8)) :]
        done = "".join(f"\n- {note}" for note in recent)
        already = f"Done so far:{done}\n" if done else ""
        return f"{already}Now give step {k} of {self.max_cycles}, something not done yet, in one sentence."

    async def cycle(self, k: int) -> Step:
        prompt = self.prompt(k)
        system, task = self.messages[0], self.messages[1]  # the system prompt and the task, as the config gives them
        reply = await self.chat([system, task, {"role": "user", "content": prompt}])
        note = note_of(reply)
        notes: list[str] = self.state["notes"]
        stale = not note or _same(note) in {_same(n) for n in notes}
        self.state["stale"] = self.state["stale"] + 1 if stale else 0
        notes.append(note)
        limit = int(self.params.get("max_stale", 2))
        if limit and self.state["stale"] >= limit:  # 0: never
            self.request_stop(f"{self.name}: {self.state['stale']} steps in a row added nothing new")
        return Step(reply, prompt=prompt)
