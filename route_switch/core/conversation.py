"""Multi-turn routing: the text a conversation is routed on, and per-session tier floors.

A follow-up such as "now the same for n = 4" or "shorter, please" looks trivial on its own;
its difficulty lives in the earlier turns. :func:`routing_text` routes on the last user message
plus bounded context from earlier turns: a token budget filled most recent first, so a long
history never inflates latency. Earlier turns are placed before the last message, oldest first,
the way a reader would see them.

:class:`SessionFloors` remembers the tier each session last used, so that with a session key
a follow-up does not drop below it (``sticky_drop`` tiers below are allowed; ``sticky: false``
turns it off). It is in-process (an LRU with a TTL) behind ``get``/``set``, the interface a
shared store would implement.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

from route_switch.core.tokens import estimate_tokens

CONTEXT_SEPARATOR = "\n\n"


@dataclass
class ConversationConfig:
    """``conversation:`` in router.yaml.

    ``context_tokens``: budget for earlier turns (0 = route on the last user message only);
    ``roles``: which earlier turns count (assistant answers are long and say little about
    what the user needs next, so by default only user turns); ``sticky``, ``sticky_drop``,
    ``session_ttl_s``, ``max_sessions``: the session floor.
    """

    context_tokens: int = 256
    roles: tuple[str, ...] = ("user",)
    sticky: bool = True
    sticky_drop: int = 0
    session_ttl_s: float = 3600.0
    max_sessions: int = 100_000

    @classmethod
    def from_dict(cls, raw, file: str = "") -> "ConversationConfig":
        """The ``conversation:`` mapping, checked against its schema (errors name the file and field)."""
        from route_switch.core.errors import ConfigError
        from route_switch.core.schema import validate
        from route_switch.core.schema.router import ConversationSection

        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ConfigError("must be a mapping like {context_tokens: 256, sticky: true}", file=file,
                              field="conversation")
        return cls.from_section(validate(ConversationSection, raw, file, where="conversation"))

    @classmethod
    def from_section(cls, m) -> "ConversationConfig":
        """From a validated :class:`~route_switch.core.schema.router.ConversationSection`."""
        return cls(**m.model_dump() | {"roles": tuple(m.roles)})


def is_messages(obj) -> bool:
    """True for a list/tuple of ``{"role": str, ...}`` mappings (a chat conversation)."""
    return isinstance(obj, (list, tuple)) and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in obj)


class MessagesError(TypeError):
    """A chat message list that is not one; the message names the item (``messages[2].content[0]``)."""


def message_text(content, where: str = "message", *, strict: bool = False) -> str:
    """Text of a message ``content``: a str, None, or OpenAI-style parts (text parts joined).

    ``strict`` (a request body the proxy answers 400): every part must be ``{"type": ...}`` and a
    text part's ``text`` a string; otherwise (``route()``) such parts are skipped.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, (list, tuple)):
        raise MessagesError(f"{where}.content must be a string, null or a list of parts")
    texts = []
    for j, p in enumerate(content):
        ok_part = isinstance(p, dict) and isinstance(p.get("type"), str)
        if strict and not ok_part:
            raise MessagesError(f"{where}.content[{j}] must be an object with a 'type'")
        if ok_part and p["type"] == "text":
            if isinstance(p.get("text"), str):
                texts.append(p["text"])
            elif strict:
                raise MessagesError(f"{where}.content[{j}].text must be a string")
    return "\n".join(texts)


def turns_of(messages, *, strict: bool = False) -> list[tuple[str, str]]:
    """``[(role, text)]`` of a message list; :class:`MessagesError` (a ``TypeError``) naming the bad item.

    ``strict`` also refuses an empty list and malformed content parts (see :func:`message_text`).
    """
    if not isinstance(messages, (list, tuple)) or (strict and not messages):
        raise MessagesError(f"'messages' must be a {'non-empty ' if strict else ''}list of {{role, content}} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise MessagesError(f"messages[{i}] must be an object with a string 'role'")
    return [(m["role"], message_text(m.get("content"), f"messages[{i}]", strict=strict)) for i, m in enumerate(messages)]


def flatten_turns(turns: Sequence[tuple[str, str]], *, context_tokens: int = 256, roles: Sequence[str] = ("user",),
                  count_tokens: Callable[[str], int] = estimate_tokens) -> str:
    """Last user message plus earlier ``roles`` turns within ``context_tokens``, most recent first.

    A turn that does not fit whole is cut to the budget left (its end is kept: the part nearest
    the follow-up). The result is chronological: context first, then the last user message.
    """
    last = None
    for i in range(len(turns) - 1, -1, -1):
        if turns[i][0] == "user":
            last = i
            break
    if last is None:
        return ""
    query = turns[last][1]
    if context_tokens <= 0:
        return query
    budget, picked = context_tokens, []
    for role, text in reversed(turns[:last]):
        if budget <= 0:
            break
        if role not in roles or not text.strip():
            continue
        n = count_tokens(text)
        if n > budget:  # keep the tail; ~4 characters per token
            text, n = text[-budget * 4:], budget
        picked.append(text)
        budget -= n
    return CONTEXT_SEPARATOR.join(list(reversed(picked)) + [query])


def routing_text(messages, *, context_tokens: int = 256, roles: Sequence[str] = ("user",),
                 count_tokens: Callable[[str], int] = estimate_tokens) -> str:
    """The text to route a chat conversation on (see :func:`flatten_turns`)."""
    return flatten_turns(turns_of(messages), context_tokens=context_tokens, roles=roles, count_tokens=count_tokens)


class SessionFloors:
    """The tier each session last used, kept ``ttl_s`` seconds (LRU-bounded, thread-safe)."""

    def __init__(self, ttl_s: float = 3600.0, max_sessions: int = 100_000, clock=time.monotonic):
        self.ttl_s, self.max_sessions, self.clock = ttl_s, max_sessions, clock
        self._d: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: str) -> int | None:
        with self._lock:
            hit = self._d.get(session)
            if hit is None:
                return None
            if self.clock() - hit[1] > self.ttl_s:
                del self._d[session]
                return None
            return hit[0]

    def set(self, session: str, tier: int) -> None:
        with self._lock:
            self._d[session] = (int(tier), self.clock())
            self._d.move_to_end(session)
            while len(self._d) > self.max_sessions:
                self._d.popitem(last=False)


def apply_floor(decision, floor: int | None, cfg: ConversationConfig, tier_decision):
    """Raise ``decision`` to ``floor − sticky_drop`` when it is below; ``tier_decision(tier)`` builds the tier's fields."""
    if floor is None or not cfg.sticky:
        return decision
    lowest = max(1, floor - cfg.sticky_drop)
    if decision.tier >= lowest:
        return decision
    t = tier_decision(lowest)
    return decision.with_(tier=t.tier, tier_name=t.tier_name, model=t.model,
                          reason=f"session floor: this conversation last used tier {floor}, "
                                 f"routed tier {decision.tier} raised to {lowest} ({decision.reason})")
