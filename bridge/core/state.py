"""The call's conversation state machine: who may speak, and where the session is.

Two small machines, each a table of named transitions in the style of h11's ``_state.py``
(the only code that changes these fields is here):

**Session phase** (:class:`SessionPhase`), driven by :class:`SessionEvent`::

    CONNECTING --OPENED--> CONFIGURING --CONFIRMED--> READY
         |                     |                        |
         +-------LOST----------+----------LOST----------+--> LOST
    READY/LOST --REPLACED--> CONNECTING      (a new session takes over the conversation)
    any --CLOSED--> CLOSED                   (the call is ending; nothing leaves it)

**Floor** (:class:`Floor`): whether the caller or the AI holds the turn, driven by
:class:`FloorEvent`::

    AI_MAY_SPEAK --DUCKED--> HELD         local onset: playout stopped, unplayed audio held
    HELD --RESUMED--> AI_MAY_SPEAK        no confirmation within the window: play on
    AI_MAY_SPEAK/HELD/CALLER --CUT--> CALLER    hard barge-in (server speech_started)
    CALLER --CALLER_STOPPED--> AI_MAY_SPEAK     the caller's utterance ended

On top of these, the response slot: at most one response is active, requests the bridge
sent are tracked by tag until their ``response.created``, a request that would collide is
deferred, and every request in flight at a barge-in becomes *stale* (its response is
cancelled when it appears). :attr:`ConversationState.may_create_response` is the one rule
for sending ``response.create``.

A transition that is not in a table is a bug in the core, not bad input: every event from
the outside is checked by the core before it drives a transition, and an impossible one
raises :class:`StateError`, which ends the call as ``internal_error`` instead of corrupting
it silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from bridge.core.playout import OutboundFrame


class StateError(RuntimeError):
    """A transition the state machine does not allow (a bug in the core)."""


class SessionPhase(Enum):
    CONNECTING = "connecting"
    CONFIGURING = "configuring"
    """``session.update`` sent; waiting for ``session.updated`` to confirm the formats."""
    READY = "ready"
    LOST = "lost"
    """The upstream session is gone; the call (and the Twilio leg) live on."""
    CLOSED = "closed"


class SessionEvent(Enum):
    OPENED = "opened"
    CONFIRMED = "confirmed"
    LOST = "lost"
    REPLACED = "replaced"
    CLOSED = "closed"


_SESSION_TRANSITIONS: dict[SessionPhase, dict[SessionEvent, SessionPhase]] = {
    SessionPhase.CONNECTING: {
        SessionEvent.OPENED: SessionPhase.CONFIGURING,
        SessionEvent.LOST: SessionPhase.LOST,
        SessionEvent.CLOSED: SessionPhase.CLOSED,
    },
    SessionPhase.CONFIGURING: {
        SessionEvent.CONFIRMED: SessionPhase.READY,
        SessionEvent.LOST: SessionPhase.LOST,
        SessionEvent.CLOSED: SessionPhase.CLOSED,
    },
    SessionPhase.READY: {
        SessionEvent.LOST: SessionPhase.LOST,
        SessionEvent.REPLACED: SessionPhase.CONNECTING,
        SessionEvent.CLOSED: SessionPhase.CLOSED,
    },
    SessionPhase.LOST: {
        SessionEvent.REPLACED: SessionPhase.CONNECTING,
        SessionEvent.CLOSED: SessionPhase.CLOSED,
    },
    SessionPhase.CLOSED: {},
}


class Floor(Enum):
    AI_MAY_SPEAK = "ai_may_speak"
    HELD = "held"
    """A local onset stopped the AI; its unplayed audio waits for the server's verdict."""
    CALLER = "caller"
    """A barge-in happened and the caller is still speaking: nothing may start a response,
    and the gate passes every frame."""


class FloorEvent(Enum):
    DUCKED = "ducked"
    RESUMED = "resumed"
    CUT = "cut"
    CALLER_STOPPED = "caller_stopped"


_FLOOR_TRANSITIONS: dict[Floor, dict[FloorEvent, Floor]] = {
    Floor.AI_MAY_SPEAK: {FloorEvent.DUCKED: Floor.HELD, FloorEvent.CUT: Floor.CALLER},
    Floor.HELD: {FloorEvent.RESUMED: Floor.AI_MAY_SPEAK, FloorEvent.CUT: Floor.CALLER},
    Floor.CALLER: {FloorEvent.CUT: Floor.CALLER, FloorEvent.CALLER_STOPPED: Floor.AI_MAY_SPEAK},
}


@dataclass(slots=True)
class ActiveResponse:
    response_id: str
    created_at: float
    """Trio time (s) of its ``response.created``."""
    audio_bytes: int = 0
    first_audio_at: float | None = None


@dataclass(frozen=True, slots=True)
class Duck:
    """A local fast barge-in in progress: playout stopped, unplayed audio held."""

    started_at: float
    """Trio time (s) of the local onset."""
    held: tuple[OutboundFrame, ...]


class Created(Enum):
    ACTIVE = "active"
    STALE = "stale"
    """Requested before the latest barge-in: it must be cancelled, never heard."""


class ConversationState:
    """Session phase, floor and response slot of one call; see the module docstring."""

    __slots__ = (
        "_deferred",
        "_duck",
        "_floor",
        "_phase",
        "_requests_in_flight",
        "_stale_requests",
        "active",
        "barge_in_epoch",
    )

    def __init__(self) -> None:
        self._phase = SessionPhase.CONNECTING
        self._floor = Floor.AI_MAY_SPEAK
        self._duck: Duck | None = None
        """Set exactly while the floor is ``HELD``."""
        self.active: ActiveResponse | None = None
        """The response being generated, from ``response.created`` to ``response.done``."""
        self._requests_in_flight: set[str] = set()
        self._stale_requests: set[str] = set()
        self._deferred = False
        self.barge_in_epoch = 0
        """Number of hard barge-ins so far; notes capture it when they start being made."""

    # -- session phase --------------------------------------------------------------------

    @property
    def phase(self) -> SessionPhase:
        return self._phase

    def lose(self) -> None:
        """The upstream session is gone: what it was doing is over. Its active response and
        the requests it never answered are dropped (a new session knows none of them), and
        a barge-in it would have ended with ``speech_stopped`` gives the floor back (the new
        session's VAD hears the caller afresh). A held local barge-in stays held: its own
        timer resolves it."""
        self.session(SessionEvent.LOST)
        self.active = None
        self._requests_in_flight.clear()
        self._stale_requests.clear()
        if self._floor is Floor.CALLER:
            self._floor_event(FloorEvent.CALLER_STOPPED)

    def session(self, event: SessionEvent) -> SessionPhase:
        try:
            self._phase = _SESSION_TRANSITIONS[self._phase][event]
        except KeyError:
            raise StateError(
                f"session: no transition {event.name} from {self._phase.name}"
            ) from None
        return self._phase

    # -- floor ----------------------------------------------------------------------------

    @property
    def floor(self) -> Floor:
        return self._floor

    def _floor_event(self, event: FloorEvent) -> None:
        try:
            self._floor = _FLOOR_TRANSITIONS[self._floor][event]
        except KeyError:
            raise StateError(f"floor: no transition {event.name} from {self._floor.name}") from None

    @property
    def duck_state(self) -> Duck | None:
        """The local barge-in waiting for confirmation, while the floor is ``HELD``."""
        return self._duck

    def duck(self, duck: Duck) -> None:
        self._floor_event(FloorEvent.DUCKED)
        self._duck = duck

    def resume(self) -> Duck:
        """The held audio plays on; returns what was held."""
        self._floor_event(FloorEvent.RESUMED)
        duck, self._duck = self._duck, None
        assert duck is not None  # HELD always carries its Duck
        return duck

    def cut(self) -> Duck | None:
        """Hard barge-in: nothing requested or generated before it may speak after it.

        Returns the local barge-in it confirms, if one was held (its audio is dropped)."""
        self._floor_event(FloorEvent.CUT)
        duck, self._duck = self._duck, None
        self.active = None
        self._stale_requests |= self._requests_in_flight
        self._requests_in_flight.clear()
        self._deferred = False
        self.barge_in_epoch += 1
        return duck

    def caller_stopped(self) -> bool:
        """The caller's utterance ended; ``True`` if that gave the floor back."""
        if self._floor is not Floor.CALLER:
            return False
        self._floor_event(FloorEvent.CALLER_STOPPED)
        return True

    # -- response slot --------------------------------------------------------------------

    @property
    def may_create_response(self) -> bool:
        return (
            self._phase is SessionPhase.READY
            and self.active is None
            and not self._requests_in_flight
            and self._floor is Floor.AI_MAY_SPEAK
        )

    def request(self, tag: str) -> None:
        """A ``response.create`` tagged ``tag`` is being sent."""
        if not self.may_create_response:
            raise StateError("response requested while one may not start")
        self._requests_in_flight.add(tag)

    def defer(self) -> None:
        """A response is wanted as soon as one may start."""
        self._deferred = True

    def take_deferred(self) -> bool:
        """``True`` (once) if a deferred response may start now."""
        if self._deferred and self.may_create_response:
            self._deferred = False
            return True
        return False

    def request_failed(self, tag: str, *, collided: bool) -> None:
        """The server refused our request ``tag``; ``collided``: because another response
        was active (ask again when it is done)."""
        if tag in self._requests_in_flight:
            self._requests_in_flight.discard(tag)
            if collided:
                self._deferred = True

    def created(self, response_id: str, tag: str | None, now: float) -> Created:
        """``response.created`` for ``response_id``, answering our request ``tag`` if any."""
        if tag is not None and tag in self._stale_requests:
            self._stale_requests.discard(tag)
            return Created.STALE
        if tag is not None:
            self._requests_in_flight.discard(tag)
        self.active = ActiveResponse(response_id, now)
        return Created.ACTIVE

    def done(self, response_id: str) -> ActiveResponse | None:
        """``response.done``: the active response it ends, if it was the active one."""
        if self.active is None or self.active.response_id != response_id:
            return None
        active, self.active = self.active, None
        return active
