"""Names of the Twilio ``mark`` messages the bridge sends after each outbound audio frame.

A name carries the playback generation, a per-call sequence number and the assistant
item the frame belongs to: ``g<generation>:m<seq>:<item_id>``, e.g. ``g3:m1207:item_Cx9``.

The generation is bumped at every Twilio ``clear``. Twilio echoes every pending mark when
it clears its buffer, and an echo cannot tell "played" from "cleared"; marks of an older
generation are therefore known to be cleared, never played (see :mod:`bridge.core.playout`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MarkName:
    generation: int
    seq: int
    item_id: str

    def __str__(self) -> str:
        return f"g{self.generation}:m{self.seq}:{self.item_id}"


def parse_mark_name(name: str) -> MarkName | None:
    """The parsed name, or ``None`` when ``name`` was not produced by this bridge."""
    parts = name.split(":", 2)
    if len(parts) != 3:
        return None
    gen, seq, item_id = parts
    if not (gen.startswith("g") and seq.startswith("m") and item_id):
        return None
    if not (gen[1:].isdigit() and seq[1:].isdigit()):
        return None
    return MarkName(generation=int(gen[1:]), seq=int(seq[1:]), item_id=item_id)
