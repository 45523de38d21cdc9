"""The soak's operation history: every step an actor took, every answer it saw, every fault
injected, in the order they happened, so a violation can be shown with what led to it."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Event:
    at: float  # seconds since the epoch
    actor: str
    what: str
    detail: str = ""


@dataclass
class History:
    started: float = field(default_factory=time.time)
    events: list[Event] = field(default_factory=list)
    operations: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    def note(self, actor: str, what: str, detail: str = "") -> Event:
        event = Event(time.time(), actor, what, detail)
        self.events.append(event)
        return event

    def operation(self, actor: str, what: str, detail: str = "") -> None:
        """An operation of the workload (counted in the report)."""
        self.operations[what] += 1
        self.note(actor, what, detail)

    def fault(self, what: str, detail: str = "") -> None:
        """A fault injected (counted in the report)."""
        self.faults[what] += 1
        self.note("chaos", what, detail)

    def line(self, event: Event) -> str:
        return f"{event.at - self.started:9.3f} {event.actor:<14} {event.what:<22} {event.detail}"

    def around(self, at: float, *, actors: set[str] | None = None, span: int = 25) -> str:
        """The events within `span` of the moment `at` (those of `actors` and the faults,
        if given), as lines."""
        chosen = [
            e for e in self.events if actors is None or e.actor in actors or e.actor == "chaos"
        ]
        index = next((i for i, e in enumerate(chosen) if e.at >= at), len(chosen))
        window = chosen[max(0, index - span) : index + span]
        return "\n".join(self.line(e) for e in window)

    def of(self, actor: str, last: int = 40) -> str:
        """The last events of one actor, as lines."""
        mine = [e for e in self.events if e.actor == actor]
        return "\n".join(self.line(e) for e in mine[-last:])
