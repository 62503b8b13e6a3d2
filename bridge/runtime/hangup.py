"""Ending a live call through Twilio's REST API (httpx), at most once per call.

The request updates the call with ``<Say>fallback</Say><Hangup/>``: the caller hears why
the call ends and the call is over even if Twilio never noticed the stream close (the
socket dropped, or the process is shutting down). A bare ``Status=completed`` would cut
the fallback ``<Say>`` that closing the stream just started.

"Already ended" counts as success: HTTP 404 (Twilio error 20404, no such call) and HTTP 400
with error 21220 (call not in progress). Other failures are reported, never raised: the
call is being cleaned up and the process must not die for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from bridge.core.twiml import say_and_hang_up

ALREADY_ENDED_CODES = frozenset({20404, 21220})


@dataclass(frozen=True, slots=True)
class HangupResult:
    ok: bool
    detail: str


class TwilioRest:
    __slots__ = ("_account_sid", "_client", "_fallback")

    def __init__(self, client: httpx.AsyncClient, account_sid: str, fallback_message: str) -> None:
        self._client = client
        self._account_sid = account_sid
        self._fallback = fallback_message

    async def hang_up(self, call_sid: str) -> HangupResult:
        return await self._update(call_sid, {"Twiml": say_and_hang_up(self._fallback)})

    async def end(self, call_sid: str) -> HangupResult:
        """``Status=completed``: the normal end of a call (``end_call``, its goodbye heard)."""
        return await self._update(call_sid, {"Status": "completed"})

    async def redirect(self, call_sid: str, twiml: str) -> HangupResult:
        """Replace the call's TwiML (``transfer_call``: ``<Dial>``); "already ended" is a
        failure here: nothing was transferred."""
        return await self._update(call_sid, {"Twiml": twiml}, ended_is_ok=False)

    async def _update(
        self, call_sid: str, form: dict[str, str], *, ended_is_ok: bool = True
    ) -> HangupResult:
        path = f"/2010-04-01/Accounts/{self._account_sid}/Calls/{call_sid}.json"
        try:
            response = await self._client.post(path, data=form)
        except httpx.HTTPError as exc:
            return HangupResult(False, f"request failed: {type(exc).__name__}: {exc}")
        if response.is_success:
            verb = "hung up" if "Status" in form or "Hangup" in form.get("Twiml", "") else "updated"
            return HangupResult(True, f"{verb} (HTTP {response.status_code})")
        code = _twilio_error_code(response)
        if ended_is_ok and (response.status_code == 404 or code in ALREADY_ENDED_CODES):
            return HangupResult(True, f"already ended (HTTP {response.status_code}, code {code})")
        return HangupResult(False, f"HTTP {response.status_code}, code {code}")


def _twilio_error_code(response: httpx.Response) -> int | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) else None
