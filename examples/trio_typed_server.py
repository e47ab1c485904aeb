"""A typed server on trio, started in a nursery: a small shared notes service.

Requests, responses and errors are attrs classes; the connection converts them from and to
JSON, answers data that does not fit with -32602 (`InvalidRequestData` on the caller's
side) and methods it does not serve with -32601, before any handler runs. Each new note is
pushed to every other client as a `notes.created` notification.

    python examples/trio_typed_server.py            # serve on a free port, run the demo client, exit
    python examples/trio_typed_server.py --serve [PORT]   # serve until Ctrl-C (default 8766)

With `--serve`, the command line can call it:

    session-py call 127.0.0.1:8766 notes.create '{"text": "buy milk", "tags": ["home"]}'
    session-py call 127.0.0.1:8766 notes.get 7      # exit status 1: NoteError
    session-py listen 127.0.0.1:8766                # notes.created, as they come
"""

from __future__ import annotations

import contextlib
import sys

import attrs
import trio

import session_trio
from session_core import InvalidRequestData, Method, MethodError, RemoteError, SessionClosed

# -- the protocol: attrs classes and methods, shared by server and client ----------------


@attrs.frozen
class NewNote:
    """The request of `notes.create`."""

    text: str
    tags: list[str] = attrs.field(factory=list)


@attrs.frozen
class Note:
    """A stored note."""

    id: int
    text: str
    tags: list[str]


@attrs.frozen
class Query:
    """The request of `notes.find`: notes with this tag (all notes without one)."""

    tag: str | None = None


@attrs.frozen
class NoteError:
    """The error value of the notes methods."""

    reason: str
    id: int | None = None


create = Method("notes.create", request=NewNote, response=Note, error=NoteError)
get = Method("notes.get", request=int, response=Note, error=NoteError)
find: Method[Query, list[Note], None] = Method("notes.find", request=Query, response=list[Note], error=None)
created = Method("notes.created", request=Note, response=None, error=None)


# -- the server ------------------------------------------------------------------------


class NotesServer:
    """The notes, shared by every session, and the handlers that serve them."""

    def __init__(self) -> None:
        self.notes: dict[int, Note] = {}
        self.sessions: set[session_trio.Session] = set()

    async def on_session(self, session: session_trio.Session) -> None:
        """Register the handlers (before any `await`), then wait for the session's end."""

        @session.on_request(create)
        async def _create(new: NewNote) -> Note:
            if not new.text.strip():
                raise MethodError(NoteError("a note needs some text"))
            note = Note(id=len(self.notes) + 1, text=new.text, tags=new.tags)
            self.notes[note.id] = note
            await self.broadcast(note, origin=session)
            return note

        @session.on_request(get)
        async def _get(note_id: int) -> Note:
            try:
                return self.notes[note_id]
            except KeyError:
                raise MethodError(NoteError("no such note", id=note_id)) from None

        @session.on_request(find)
        async def _find(query: Query) -> list[Note]:
            return [note for note in self.notes.values() if query.tag is None or query.tag in note.tags]

        self.sessions.add(session)
        try:
            await session.wait_closed()
        finally:
            self.sessions.discard(session)

    async def broadcast(self, note: Note, *, origin: session_trio.Session) -> None:
        """Tell every other client about a new note."""
        for other in list(self.sessions - {origin}):
            with contextlib.suppress(SessionClosed):  # it left meanwhile
                await other.notify(created, note)


async def serve(port: int = 8766, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the notes on `127.0.0.1:port` until cancelled; `nursery.start` gets the port."""
    server = NotesServer()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(session_trio.serve, server.on_session, "127.0.0.1", port)
        listener = listeners[0]
        assert isinstance(listener, trio.SocketListener)
        task_status.started(listener.socket.getsockname()[1])


# -- a client --------------------------------------------------------------------------


async def demo_client(url: str) -> None:
    """Call every method, typed, and watch a second client get the notification."""
    async with session_trio.connect(url) as alice, session_trio.connect(url) as bob:
        told = trio.Event()

        @bob.on_notification(created)
        async def _created(note: Note) -> None:
            print(f"bob was told: {note}")
            told.set()

        note = await alice.request(create, NewNote("buy milk", ["home"]))  # a `Note`
        print(f"created: {note}")
        await alice.request(create, NewNote("write the report", ["work"]))
        print(f"get 1: {await alice.request(get, 1)}")
        try:
            await alice.request(get, 7)
        except RemoteError as exc:  # `exc.error` is a `NoteError`
            print(f"get 7: {exc.error}")
        print(f"find home: {await alice.request(find, Query('home'))}")
        try:
            # Raw JSON through the method's name: the server refuses data that does not fit.
            await alice.request("notes.create", {"text": 42})
        except InvalidRequestData as exc:
            print(f"bad data: {exc.code}")
        with trio.fail_after(5):
            await told.wait()


async def main() -> None:
    """Start the server in a nursery, run the demo client against it, shut down."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, 0)
        url = f"ws://127.0.0.1:{port}/"
        print(f"serving on {url}")
        await demo_client(url)
        nursery.cancel_scope.cancel()  # the server closes its sessions with 1001
    print("done")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        port = int(sys.argv[2]) if len(sys.argv) > 2 else 8766
        print(f"serving on ws://127.0.0.1:{port}/ (Ctrl-C stops)", flush=True)
        try:
            trio.run(serve, port)
        except* KeyboardInterrupt:
            pass
    else:
        trio.run(main)
