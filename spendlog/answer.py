"""Reading one HTTP answer as its bytes pass by: usage, ids, finish reason, errors.

``AnswerReader`` is fed the raw bytes the caller will get and hands back what to deliver. Only
when the capture asked for the usage chunk on the caller's behalf (``dropping``) does that differ
from the input: the usage-only SSE event (``choices: []`` with ``usage``) is removed, and so is the
``"usage":null`` member the option adds to every chunk; a partial event may be held back until its
end arrives. Compressed answers are passed on raw and read from a decoded copy
(``spendlog.decoders``); bytes already decoded by the client are recognised.

Streams are not JSON-parsed chunk by chunk. A network read is cut at its last event boundary
(``spendlog.sse.EventSplitter``) and the complete events are searched as one block with C-level
counts and finds: only the events that can carry what we need are parsed (the first one, usage
objects, errors, ``[DONE]``); ``finish_reason`` is read with a regex only when one is not null.
CR line ends take the event-by-event path, which gives the same results.

Nothing here raises: a failure stops the reading (the bytes flow on untouched) and is noted in
``problems`` and warned about once per kind. So does a memory cap, and the record says why, usage
unknown: a non-streamed answer is read to ``MAX_BODY_BYTES`` (32 MiB) decoded, 64 KiB for an error
(``body_too_large``), by decoders whose output per call is bounded (a gzip bomb never gets past the
cap); a stream holds at most 16 MiB of an unfinished event (``spendlog.sse.MAX_EVENT_BYTES``,
``event_too_large``) and a compressed one is decoded 1 MiB at a time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from spendlog.db.log import warn_once
from spendlog.decoders import decoder_for
from spendlog.headers import scrub, text
from spendlog.sse import EventSplitter, EventTooLarge, parse_event, split_events
from spendlog.usage import Usage, error_message, loads_answer, loads_exact, parse_usage

__all__ = ["AnswerReader", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 32 * 1024 * 1024  # non-streamed answers above this, decoded, are passed on but not parsed
_MAX_ERROR_BODY, _DECODE_PIECE = 64 * 1024, 1024 * 1024  # an error answer read; a compressed stream decoded at a time
_FINISH = re.compile(rb'"finish_reason"\s*:\s*"((?:[^"\\]|\\.){1,64})"')
_USAGE_SET = re.compile(rb'"usage"\s*:\s*(?!null\b)')  # usage that is set: an object, or garbage to flag
_ERROR = re.compile(rb'"error"\s*:\s*(?!null)')  # an error member that is set
_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null\b|"usage"\s*:\s*null\s*,')
_TEXTUAL_FIRST_BYTES = frozenset(b'{[:de"\r\n\t ')  # an already-decoded JSON or SSE body starts so


class AnswerReader:
    """The state of one answer (see the module docstring)."""

    def __init__(self, *, usage_injected: bool, secret: str | None, endpoint: str):
        self._injected = usage_injected
        self._secret = secret
        self._endpoint = endpoint
        self.status_code: int | None = None
        self.request_id: str | None = None
        self.model: str | None = None
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.sse = False
        self.stream_error: str | None = None
        self.problems: list[tuple[str, str]] = []
        self.t_first: int | None = None  # first data event (perf_counter_ns)
        self.t_delta: int | None = None  # first event with a delta: the first content
        self.t_end: int | None = None
        self.eof = False
        self.done = False  # saw the final event ([DONE], response.completed...)
        self.passthrough = False
        self._dropping = False
        self._splitter = EventSplitter()
        self._decoder = None
        self._sniff = False
        self._body_parts: list[bytes] = []
        self._body_size = 0
        self._body_limit = MAX_BODY_BYTES
        self._need_first = True

    # -- what the capture calls -------------------------------------------------------------------

    def started(self, status_code: int, headers: Sequence[tuple], *, decoded: bool = False) -> None:
        try:
            self.status_code = int(status_code)
            self._decoder, self._sniff = None, False
            ctype = encoding = ""
            for name, value in headers:
                if len(name) in (12, 16):  # "content-type", "content-encoding": skip the rest cheaply
                    lname = text(name).lower()
                    if lname == "content-type":
                        ctype = text(value).lower()
                    elif lname == "content-encoding":
                        encoding = text(value).strip().lower()
            self.sse = ctype.startswith("text/event-stream") and self.status_code < 400
            self._dropping = self.sse and self._injected
            if self.status_code >= 400:
                self._body_limit = _MAX_ERROR_BODY
            if encoding and encoding != "identity" and not decoded:
                self._decoder = decoder_for(encoding)
                self._sniff = True
                self._dropping = False  # cannot cut an event out of compressed bytes: pass them as they are
                if self._decoder is None:
                    self._problem("unsupported_encoding", f"cannot read a {encoding!r} answer; usage not recorded")
                    self.passthrough = True
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def feed(self, chunk: bytes) -> bytes:
        if self.passthrough or not chunk:
            return chunk
        if self._dropping:  # no decoder here: the bytes we read are the bytes we deliver
            region = None
            try:
                region = self._splitter.take_complete(chunk)
                if not region:
                    return b""
                if b"\r" not in region:
                    return self._scan(region)
                return b"".join([self._on_event(raw) for raw in split_events(region)])
            except Exception as exc:  # noqa: BLE001 - stop reading, deliver everything held
                rest = self._splitter.take_pending()
                self._fail(exc)
                return rest + chunk if region is None else region + rest
        try:
            if not self.sse:
                self._collect(chunk)
            elif self._decoder is None:
                self._feed_events(chunk)
            else:
                self._feed_decoded_events(chunk)
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)
        return chunk

    def end(self) -> bytes:
        self.t_end = time.perf_counter_ns()
        self.eof = True
        if self.passthrough:
            return b""
        dropping = self._dropping  # then what is held back is the caller's: it must come out
        rest = b""
        try:
            if self._decoder is not None and not self._sniff and hasattr(self._decoder, "flush"):
                tail = self._decoder.flush()
                if tail:
                    if self.sse:
                        self._feed_events(tail)
                    else:
                        self._keep(tail)
            rest = self._splitter.take_pending()
            if rest and self.sse:
                out = self._on_event(rest)  # an unterminated last event
                return out if dropping else b""
            return b""
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)
            return (rest or self._splitter.take_pending()) if dropping else b""

    def outcome(self) -> tuple[str | None, str | None]:
        """``(error_type, message)`` the answer itself shows (None, None when fine), reading the
        collected body of a non-streamed answer."""
        if self.status_code is None:
            return None, None
        if self.status_code >= 400:
            return f"http_{self.status_code}", error_message(b"".join(self._body_parts))
        if self.passthrough:
            return None, None
        if not self.sse:
            if not self.eof or self._body_size > self._body_limit:
                return None, None
            try:
                obj = loads_answer(b"".join(self._body_parts))
            except ValueError:
                return "bad_response", f"answer is not JSON ({self._body_size} bytes, status {self.status_code})"
            if not isinstance(obj, dict):
                return "bad_response", "answer is not a JSON object"
            self._absorb(obj)
            return None, None
        if self.stream_error is not None:
            return "stream_error", self.stream_error
        if self.eof and not self.done and self.finish_reason is None:
            return "stream_interrupted", "the stream ended before [DONE]"
        return None, None

    # -- streams ----------------------------------------------------------------------------------

    def _feed_events(self, data: bytes) -> bytes:
        region = self._splitter.take_complete(data)
        if not region:
            return b""
        if b"\r" not in region:
            return self._scan(region)
        return b"".join([self._on_event(raw) for raw in split_events(region)])

    def _scan(self, region: bytes) -> bytes:
        """Read the complete events in ``region`` (LF line ends) as one block; returns the region
        as the caller gets it (``_on_event`` does the same event by event). The common case, plain
        content chunks, costs a few C-level counts and no Python per event."""
        if self.t_delta is None and b'"delta"' in region:
            self.t_delta = time.perf_counter_ns()
        n = region.count(b'"finish_reason"')
        if n and n != region.count(b'"finish_reason":null'):
            for m in _FINISH.finditer(region):
                self.finish_reason = m.group(1).decode("utf-8", "replace")
        # the "usage":null members include_usage adds to every chunk carry nothing: gone first
        bare = region.replace(b',"usage":null', b"")  # the same object when there is none
        more_usage = b'"usage"' in bare  # usage that is set (or null in JSON with spaces)
        drops = None
        if self._need_first or more_usage or b'"error"' in bare or b"[DONE]" in bare:
            drops = self._read_marked(bare, more_usage)
        if not self._dropping:
            return region
        if drops:
            pieces, prev = [], 0
            for start, end in drops:
                pieces.append(bare[prev:start])
                prev = end
            pieces.append(bare[prev:])
            bare = b"".join(pieces)
        return _without_null_usage(bare) if more_usage else bare

    def _read_marked(self, region: bytes, usage_set: bool) -> list[tuple[int, int]]:
        """Parse the events of ``region`` that matter (the first data event, usage, errors,
        [DONE]); returns the (start, end) of those to drop."""
        ends: dict[int, int] = {}  # boundary position -> event start
        if self._need_first:
            pos = 0
            while (e := region.find(b"\n\n", pos)) >= 0:
                if parse_event(region[pos : e + 2])[1] is not None:
                    ends[e] = _start_of(region, e)
                    break
                pos = e + 2
        if usage_set:
            for m in _USAGE_SET.finditer(region):
                _mark_at(region, ends, m.start())
        if b'"error"' in region:
            for m in _ERROR.finditer(region):
                _mark_at(region, ends, m.start())
        pos = region.find(b"[DONE]")
        while pos >= 0:
            pos = region.find(b"[DONE]", _mark_at(region, ends, pos))
        drops = []
        for e in sorted(ends):
            if self._read_event_safely(region[ends[e] : e + 2]):
                drops.append((ends[e], e + 2))
        return drops

    def _on_event(self, raw: bytes) -> bytes:
        """Read one raw event. Returns what the caller gets: b"" for the usage-only event we asked
        for (its leading blank lines excepted), the event without the ``"usage":null`` member our
        option added, or the event as it came."""
        if self.t_delta is None and b'"delta"' in raw:
            self.t_delta = time.perf_counter_ns()
        for m in _FINISH.finditer(raw):
            self.finish_reason = m.group(1).decode("utf-8", "replace")
        drop = False
        if (self._need_first or b"[DONE]" in raw or _USAGE_SET.search(raw)
                or (b'"error"' in raw and _ERROR.search(raw))):
            drop = self._read_event_safely(raw)
        if not self._dropping:
            return raw
        if drop:
            return raw[: len(raw) - len(raw.lstrip(b"\r\n"))]
        return _without_null_usage(raw)

    def _read_event_safely(self, raw: bytes) -> bool:
        try:
            return self._read_event(raw)
        except ValueError:
            return False  # not JSON: not ours to judge, the caller gets it as it is
        except Exception as exc:  # noqa: BLE001 - judge it on its bytes alone
            if not any(kind == "capture_error" for kind, _ in self.problems):
                self._problem("capture_error", f"could not read a stream event: {self._describe(exc)}")
            if b"data: [DONE]" in raw:
                self.done = True
            return self._dropping and b'"choices":[]' in raw and _USAGE_SET.search(raw) is not None

    def _read_event(self, raw: bytes) -> bool:
        """Parse one event and take what it says; True when it is the usage-only event to drop."""
        _name, data = parse_event(raw)
        if data is None:
            return False
        if self._need_first:
            self._need_first = False
            self.t_first = time.perf_counter_ns()
        if data.strip() == b"[DONE]":
            self.done = True
            return False
        obj = loads_exact(data)
        if not isinstance(obj, dict):
            return False
        self._absorb(obj)
        return self._dropping and obj.get("choices") == [] and obj.get("usage") is not None

    # -- whole answers and shared bits ------------------------------------------------------------

    def _absorb(self, obj: dict) -> None:
        """Take id, model, usage, finish reason and errors from an answer or a stream event."""
        kind = obj.get("type")
        resp = obj.get("response") if isinstance(kind, str) and isinstance(obj.get("response"), dict) else obj
        rid = resp.get("id")
        if isinstance(rid, str) and rid and self.request_id is None:
            self.request_id = rid
        model = resp.get("model")
        if isinstance(model, str) and model:
            self.model = model
        if resp.get("usage") is not None:
            self.usage = parse_usage(resp["usage"])
        choices = resp.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                    self.finish_reason = choice["finish_reason"]
        if resp is not obj or obj.get("object") == "response":  # Responses API
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                self.done = True
            details, status = resp.get("incomplete_details"), resp.get("status")
            if isinstance(details, dict) and isinstance(details.get("reason"), str):
                self.finish_reason = details["reason"]
            elif isinstance(status, str) and status != "in_progress":
                self.finish_reason = status
        err = obj.get("error") if "error" in obj else (resp.get("error") if kind == "response.failed" else None)
        if kind == "error":
            err = obj
        if err:
            msg = err.get("message") if isinstance(err, dict) else err
            self.stream_error = str(msg if msg else err)

    def _decode(self, chunk: bytes, most: int) -> bytes:
        """At most ``most`` decoded bytes of ``chunk`` (the decoder keeps the rest of its input)."""
        if self._sniff:
            self._sniff = False
            if chunk[0] in _TEXTUAL_FIRST_BYTES:  # already decoded (the client did it)
                self._decoder = None
                return chunk
        return self._decoder.decode(chunk, most)

    def _feed_decoded_events(self, chunk: bytes) -> None:
        """A compressed stream's read, decoded and read piece by piece (a bomb never decodes whole)."""
        self._feed_events(self._decode(chunk, _DECODE_PIECE))
        decoder = self._decoder
        while decoder is not None and decoder.pending:
            self._feed_events(decoder.decode(b"", _DECODE_PIECE))

    def _collect(self, chunk: bytes) -> None:
        """Keep a non-streamed answer's bytes (decoded) for ``outcome``, up to the body cap."""
        self._keep(chunk if self._decoder is None else self._decode(chunk, self._body_limit - self._body_size + 1))

    def _keep(self, data: bytes) -> None:
        room = self._body_limit - self._body_size
        self._body_size += len(data)
        if len(data) <= room:
            self._body_parts.append(data)
            return
        self.passthrough = True  # stop reading; an error answer keeps its first part, for the message
        if self.status_code is not None and self.status_code < 400:
            self._body_parts = []
            self._problem("body_too_large", f"answer larger than {self._body_limit} bytes decoded; "
                                            "usage not read, the bytes passed on untouched")

    def _describe(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {scrub(str(exc), self._secret)[:200]}"

    def _problem(self, kind: str, message: str) -> None:
        self.problems.append((kind, message))
        warn_once(f"capture-{kind}", f"{message} (endpoint {self._endpoint})")

    def _fail(self, exc: BaseException) -> None:
        self.passthrough = True
        self._dropping = False
        if isinstance(exc, EventTooLarge):
            self._problem("event_too_large", f"a stream event passed {exc.limit} bytes; usage not read, "
                                             "the bytes passed on untouched")
            return
        self._problem("capture_error", f"stopped reading an answer: {self._describe(exc)}")


# -- helpers --------------------------------------------------------------------------------------

def _start_of(region: bytes, boundary: int) -> int:
    """Where the event ending at ``boundary`` (an LF LF) starts, leading blank lines excluded (a
    region may begin with the lone LF of a blank line whose other LF ended the region before)."""
    s = region.rfind(b"\n\n", 0, boundary)
    if s >= 0:
        return s + 2
    return 1 if region.startswith(b"\n") else 0


def _mark_at(region: bytes, ends: dict[int, int], pos: int) -> int:
    """Note the event holding ``pos`` for parsing; returns where it ends."""
    e = region.find(b"\n\n", pos)
    ends[e] = _start_of(region, e)
    return e + 2


def _without_null_usage(data: bytes) -> bytes:
    """``data`` without the ``"usage": null`` members include_usage adds to every chunk."""
    if b'"usage"' not in data:
        return data
    data = data.replace(b',"usage":null', b"")
    if b'"usage"' in data and _NULL_USAGE.search(data):
        data = _NULL_USAGE.sub(b"", data)
    return data
