"""Join two TCP sockets in the kernel with splice(2), for bytes that need no looking at.

Used for HTTPS passed through by the relay and for data connections on the agent: the bytes
are already encrypted end to end, so they go socket -> pipe -> socket without being copied
into Python. Beside the protocol core, not in it: it does I/O. Linux only.

The joining is done by one thread per process on its own level-triggered epoll. Through a
Trio task, every crossing of a joined connection cost a task wake-up, an epoll re-arm (Trio
registers one-shot) and a splice that failed with EAGAIN, about twice the CPU
(bench/relay_parts.py); here a readable socket costs one `epoll_wait` entry and two
splices, and registrations change only when a direction blocks or ends. The thread holds
the GIL only between system calls; Trio tasks wait for their pair on an event.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import socket
import threading
from collections.abc import Callable
from typing import Final

import trio

__all__ = ["Splicer", "splice_sockets"]

log = logging.getLogger("nascloud.splice")

F_SETPIPE_SZ: Final = 1031
F_GETPIPE_SZ: Final = 1032
PIPE_BYTES: Final = 1024 * 1024
_FLAGS: Final = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_IN: Final = select.EPOLLIN | select.EPOLLRDHUP
_OUT: Final = select.EPOLLOUT
_BURST: Final = 16  # pipe loads one direction moves before others get a turn


class _Direction:
    __slots__ = ("capacity", "ended", "pending", "read_end", "sink", "source", "total", "write_end")

    def __init__(self, source: int, sink: int) -> None:
        self.source = source
        self.sink = sink
        self.read_end, self.write_end = os.pipe()
        try:
            try:
                fcntl.fcntl(self.write_end, F_SETPIPE_SZ, PIPE_BYTES)
            except OSError:
                pass  # a smaller pipe only means more rounds
            self.capacity: int = fcntl.fcntl(self.write_end, F_GETPIPE_SZ)
        except BaseException:
            self.close()  # no one else holds the pipe yet (out of fds: EMFILE)
            raise
        self.pending = 0  # bytes in the pipe, not yet in the sink
        self.total = 0
        self.ended = False

    def close(self) -> None:
        os.close(self.read_end)
        os.close(self.write_end)


class _Pair:
    __slots__ = ("a", "b", "backward", "done", "failed", "forward", "masks", "over")

    def __init__(self, a: int, b: int, done: Callable[[_Pair], None]) -> None:
        self.a, self.b = a, b
        self.forward = _Direction(a, b)
        try:
            self.backward = _Direction(b, a)
        except BaseException:
            self.forward.close()  # the second pipe failed (EMFILE): the first must not stay
            raise
        self.done = done  # called from the splicer thread, once
        self.failed = False
        self.over = False  # finished and let go of
        self.masks = {a: 0, b: 0}

    def outgoing(self, fd: int) -> _Direction:
        return self.forward if fd == self.a else self.backward

    def incoming(self, fd: int) -> _Direction:
        return self.backward if fd == self.a else self.forward

    def finished(self) -> bool:
        return self.failed or (self.forward.ended and self.backward.ended)

    def release(self) -> None:
        """Over: its pipes closed (its sockets are the caller's)."""
        self.over = True
        self.forward.close()
        self.backward.close()

    def mask(self, fd: int) -> int:
        out, into = self.outgoing(fd), self.incoming(fd)
        mask = 0
        if not out.ended and not out.pending:
            mask |= _IN
        if not into.ended and into.pending:
            mask |= _OUT
        return mask


class Splicer:
    """The process's splicing thread, started on first use."""

    def __init__(self) -> None:
        self._reset()
        # A forked child has no splicing thread: it starts its own on first use.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._reset_state()

    def _reset_state(self) -> None:
        self._submitted: list[tuple[str, _Pair]] = []
        self._pairs: dict[int, _Pair] = {}
        self._epoll: select.epoll | None = None
        self._wake = -1

    def _start(self) -> None:
        # All or nothing (out of fds: EMFILE): a half-started splicer, its epoll kept but
        # without a thread, would take every later join and move none of them.
        epoll = select.epoll()
        try:
            self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            epoll.register(self._wake, select.EPOLLIN)
            self._epoll = epoll  # before the thread, which serves it
            threading.Thread(target=self._run, name="splicer", daemon=True).start()
        except BaseException:
            if self._wake >= 0:
                os.close(self._wake)
            epoll.close()
            self._epoll, self._wake = None, -1
            raise

    def _submit(self, what: str, pair: _Pair) -> None:
        with self._lock:
            if self._epoll is None:
                self._start()
            self._submitted.append((what, pair))
            os.eventfd_write(self._wake, 1)  # under the lock: a failed thread closes it

    async def join(self, a: trio.socket.SocketType, b: trio.socket.SocketType) -> tuple[int, int]:
        """Move bytes both ways until both directions have ended (or one failed); the bytes
        moved from `a` to `b` and from `b` to `a`. The sockets stay open: the caller closes
        them once this returns."""
        token = trio.lowlevel.current_trio_token()
        finished = trio.Event()

        def done(_: _Pair) -> None:
            try:
                token.run_sync_soon(finished.set)
            except trio.RunFinishedError:
                pass

        pair = _Pair(a.fileno(), b.fileno(), done)
        # What is already waiting moves now, from this thread: the splicing thread would first
        # have to win the GIL from this one, about 0.4 ms on an agent whose ready connection
        # holds the browser's first bytes (bench/RESULTS.md). One pipe load each way at most.
        for way in (pair.forward, pair.backward):
            self._pump(pair, way, rounds=1)
        if pair.finished():
            pair.release()
            await trio.lowlevel.checkpoint()
            return pair.forward.total, pair.backward.total
        try:
            self._submit("add", pair)
        except BaseException:
            pair.release()  # never reached the thread: its pipes are still ours
            raise
        try:
            await finished.wait()
        finally:
            if not finished.is_set():
                # Cancelled: the thread lets go of the sockets before anyone closes them.
                self._submit("drop", pair)
                with trio.CancelScope(shield=True):
                    await finished.wait()
        return pair.forward.total, pair.backward.total

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException:
            # Each pair's errors end that pair only, so nothing should get here. If something
            # does, every join ends as failed and the next one starts a new thread, rather than
            # all of them waiting for ever on a thread that is gone.
            log.critical("the splicing thread failed; its connections end", exc_info=True)
            self._abandon()

    def _abandon(self) -> None:
        with self._lock:
            epoll, submitted = self._epoll, self._submitted
            pairs = {id(pair): pair for pair in self._pairs.values()}
            pairs.update((id(pair), pair) for _, pair in submitted)
            if self._wake >= 0:
                os.close(self._wake)
            self._reset_state()
        for pair in pairs.values():
            if not pair.over:
                pair.failed = True
                pair.release()
                pair.done(pair)
        if epoll is not None:
            epoll.close()

    def _serve(self) -> None:
        assert self._epoll is not None
        while True:
            woken = False
            for fd, events in self._epoll.poll():
                if fd == self._wake:
                    woken = True
                    continue
                pair = self._pairs.get(fd)
                if pair is None:
                    continue  # finished earlier in this batch
                try:
                    self._on_event(pair, fd, events)
                except Exception:
                    # A bug must not stop every other joined connection: end this one.
                    log.exception("splicing failed")
                    pair.failed = True
                    self._finish(pair)
            if woken:
                # After the batch, so that no event in it can meet a new pair on a reused fd.
                try:
                    self._take_submissions()
                except Exception:
                    log.exception("taking new joins failed")  # the thread goes on regardless

    def _take_submissions(self) -> None:
        assert self._epoll is not None
        try:
            os.eventfd_read(self._wake)
        except BlockingIOError:
            pass
        with self._lock:
            submitted, self._submitted = self._submitted, []
        for what, pair in submitted:
            if what == "add":
                try:
                    for fd in (pair.a, pair.b):
                        pair.masks[fd] = pair.mask(fd)
                        self._epoll.register(fd, pair.masks[fd])
                        self._pairs[fd] = pair
                except (OSError, ValueError) as exc:
                    # A socket closed by someone else before it got here (a closed socket's
                    # number is -1, which epoll refuses with ValueError): end this pair.
                    log.warning("a connection to join was already gone: %s", exc)
                    pair.failed = True
                    self._finish(pair)
            elif self._pairs.get(pair.a) is pair or self._pairs.get(pair.b) is pair:
                pair.failed = True
                self._finish(pair)

    def _on_event(self, pair: _Pair, fd: int, events: int) -> None:
        if events & select.EPOLLERR:
            pair.failed = True
        else:
            if events & (_IN | select.EPOLLHUP):
                self._pump(pair, pair.outgoing(fd))
            if events & _OUT and not pair.failed:
                self._pump(pair, pair.incoming(fd))
            if events & select.EPOLLHUP and not pair.failed and not pair.mask(fd):
                # Shut both ways with nothing left to move into it: it is gone.
                pair.failed = not pair.incoming(fd).ended
        if pair.finished():
            self._finish(pair)
            return
        assert self._epoll is not None
        for each in (pair.a, pair.b):
            mask = pair.mask(each)
            if mask != pair.masks[each]:
                pair.masks[each] = mask
                self._epoll.modify(each, mask)

    def _pump(self, pair: _Pair, way: _Direction, rounds: int = _BURST) -> None:
        """Move what the source has, as far as the sink takes it, up to `rounds` pipe loads."""
        for _ in range(rounds):
            if way.ended:
                return
            if way.pending:
                try:
                    way.pending -= os.splice(way.read_end, way.sink, way.pending, flags=_FLAGS)
                except BlockingIOError:
                    return  # the sink is full: wait for EPOLLOUT
                except OSError:
                    pair.failed = True
                    return
                if way.pending:
                    continue
            try:
                moved = os.splice(way.source, way.write_end, way.capacity, flags=_FLAGS)
            except BlockingIOError:
                return
            except OSError:
                pair.failed = True
                return
            if moved == 0:
                way.ended = True  # EOF: pass the half-close on
                try:
                    _shutdown_write(way.sink)
                except OSError:
                    pass
                return
            way.total += moved
            way.pending = moved
            if moved < way.capacity:
                # Most likely drained: push this out, then let epoll say when there is more.
                try:
                    way.pending -= os.splice(way.read_end, way.sink, way.pending, flags=_FLAGS)
                except BlockingIOError:
                    pass
                except OSError:
                    pair.failed = True
                return

    def _finish(self, pair: _Pair) -> None:
        """Let go of the pair's sockets and tell its task; once only."""
        assert self._epoll is not None
        if pair.over:
            return
        for fd in (pair.a, pair.b):
            if self._pairs.get(fd) is pair:
                del self._pairs[fd]
                try:
                    self._epoll.unregister(fd)
                except OSError:
                    pass
        pair.release()
        pair.done(pair)


def _shutdown_write(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    try:
        sock.shutdown(socket.SHUT_WR)
    finally:
        sock.detach()  # the fd is the caller's: only borrowed here


_splicer = Splicer()


async def splice_sockets(a: trio.socket.SocketType, b: trio.socket.SocketType) -> tuple[int, int]:
    """Move bytes both ways until both directions have ended, then close both sockets.

    Returns the bytes moved from `a` to `b` and from `b` to `a`. A half-close is passed on;
    an error in either direction (a reset) ends both. Cancelled: both sockets are closed.
    """
    try:
        return await _splicer.join(a, b)
    finally:
        a.close()
        b.close()
