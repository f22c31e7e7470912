"""Network namespaces without forking: a thread enters (or makes) a namespace, runs a
function there, and ends.

pyroute2's ``netns.create`` and its sockets in a namespace (``IPRoute(netns=...)``)
fork a helper process and stop it with SIGTERM. A forked helper inherits the parent's
signal handlers and ``finally`` blocks: a handler that exits unwound through the
parent's clean-up code in the child (a benchmark's lab was deleted by its own helper
while the parent was still building it). Every Plexus process (agent, lab, tests,
benchmarks) uses these functions instead; nothing here forks.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, TypeVar, cast

from pyroute2 import IPRoute
from pyroute2 import netns as _pyroute2_netns

from proto import names

T = TypeVar("T")
U = TypeVar("U")
CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ_LO = struct.pack("=16sH22x", b"lo", 0)  # struct ifreq: a name, its flags
_libc = ctypes.CDLL(None, use_errno=True)

listnetns = _pyroute2_netns.listnetns
#: remove a named namespace (an unmount and an unlink: no fork)
remove = _pyroute2_netns.remove


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


#: runtime namespaces held open since :func:`is_there` found them: while one is held, its
#: inode cannot be given to another namespace, so path and inode stay its identity
#: (inode numbers of freed namespaces are reused at once). Released once the path no
#: longer leads to it, or it is no longer asked for (:func:`release`): the namespace of a
#: killed container then goes, with the agent's interface in it.
_pinned: dict[str, int] = {}


def open_ns(ns: str) -> int:
    """A file descriptor of namespace ``ns``: a name in ``/run/netns``, or a runtime's
    namespace (:func:`proto.names.runtime_netns`), which must still be the one of that
    inode (ESTALE otherwise: the path now holds another namespace)."""
    runtime = names.parse_runtime_netns(ns)
    if runtime is None:
        return os.open(f"/run/netns/{ns}", os.O_RDONLY)
    held = _pinned.get(ns)
    if held is not None:
        return os.dup(held)
    path, inode = runtime
    fd = os.open(path, os.O_RDONLY)
    if os.fstat(fd).st_ino != inode:
        os.close(fd)
        raise OSError(errno.ESTALE, f"{path} is no longer the namespace of inode {inode}")
    return fd


def is_there(ns: str) -> bool:
    """A runtime's namespace is still at its path, with its inode (and is now held:
    see :data:`_pinned`). Never the caller's own namespace (the host's), nor one named as
    the agent names its own: those are no runtime's."""
    runtime = names.parse_runtime_netns(ns)
    if runtime is None:
        return ns in listnetns()
    path, inode = runtime
    held = _pinned.get(ns)
    try:
        same = os.stat(path).st_ino == inode
    except OSError:
        same = False
    if not same:
        if held is not None:
            os.close(_pinned.pop(ns))
        return False
    if held is None:
        if inode == os.stat("/proc/self/ns/net").st_ino or os.path.basename(path).startswith(
            names.ALIAS_PREFIX
        ):
            return False
        try:
            held = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        if os.fstat(held).st_ino != inode:
            os.close(held)
            return False
        _pinned[ns] = held
    return True


def release(keep: Collection[str]) -> None:
    """Let go of the runtime namespaces held but not in ``keep``."""
    for ns in [ns for ns in _pinned if ns not in keep]:
        os.close(_pinned.pop(ns))


def setns(fd: int, what: str) -> None:
    """Move the calling thread into the network namespace of descriptor ``fd``."""
    _check(_libc.setns(fd, CLONE_NEWNET), f"setns {what}")


def enter(ns: str, create: bool) -> None:
    """Move the calling thread into ``ns``; ``create``: into a new namespace, bound to
    ``/run/netns/<ns>``, its ``lo`` up (an ioctl, not a netlink round trip)."""
    if not create:
        fd = open_ns(ns)
        try:
            setns(fd, ns)
        finally:
            os.close(fd)
        return
    _check(_libc.unshare(CLONE_NEWNET), f"unshare {ns}")
    _pyroute2_netns.attach(ns, f"{os.getpid()}/task/{threading.get_native_id()}")
    lo_up()


def lo_up() -> None:
    """Bring the calling thread's namespace's ``lo`` up (an ioctl: no netlink)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack_from("=H", fcntl.ioctl(s, SIOCGIFFLAGS, _IFREQ_LO), 16)[0]
        if not flags & IFF_UP:
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("=16sH22x", b"lo", flags | IFF_UP))


def visit_each(items: Sequence[U], fn: Callable[[U], T]) -> list[T | OSError]:
    """``fn`` of each item, in order, on the calling thread, which ``fn`` may move into
    another namespace (:func:`setns`, :func:`enter`): it is moved back to the namespace
    it started in after each. One outcome each (an ``OSError`` of ``fn`` is its item's);
    a failure to move back raises. Only on a thread of its own (:func:`in_netns` with
    ``ns`` None), never one of the default executor."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        out: list[T | OSError] = []
        for item in items:
            try:
                out.append(fn(item))
            except OSError as e:
                out.append(e)
            setns(home, "back to the thread's own namespace")
        return out
    finally:
        os.close(home)


def _thread(
    ns: str | None, fn: Callable[[], T], create: bool, done: Callable[[Any, bool], object]
) -> None:
    """Start the thread that enters (or makes) ``ns`` (None: stays in the caller's),
    runs ``fn`` and ends; it hands ``done`` the result (True) or the exception (False)."""

    def run() -> None:
        try:
            if ns is not None:
                enter(ns, create)
            result = fn()
        except BaseException as e:  # handed to the caller
            done(e, False)
        else:
            done(result, True)

    threading.Thread(target=run, name=f"netns-{ns or 'own'}", daemon=True).start()


def run_in(ns: str, fn: Callable[[], T], create: bool = False) -> T:
    """Run ``fn`` in network namespace ``ns`` (``/proc/sys/net`` is then that of
    ``ns``), on a thread of its own that enters ``ns`` and ends after, so no other work
    ever runs in the wrong namespace. ``create``: the thread makes ``ns`` (a new
    namespace bound to ``/run/netns/<ns>``, ``lo`` up) instead of entering it. Blocks."""
    out: list[tuple[Any, bool]] = []
    finished = threading.Event()

    def done(value: Any, ok: bool) -> None:
        out.append((value, ok))
        finished.set()

    _thread(ns, fn, create, done)
    finished.wait()
    value, ok = out[0]
    if not ok:
        raise value
    return cast(T, value)


async def in_netns(ns: str | None, fn: Callable[[], T], create: bool = False) -> T:
    """:func:`run_in` without blocking the event loop: its thread hands the outcome to
    the loop (not through the default executor: one thread per call, not two). ``ns``
    None: the thread starts in the caller's namespace, for an ``fn`` that moves it
    (:func:`setns`) itself: a thread of the default executor must never be moved."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, ok: bool) -> None:
        if future.done():  # the caller was cancelled meanwhile
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    _thread(ns, fn, create, lambda value, ok: loop.call_soon_threadsafe(settle, value, ok))
    return await future


def netlink_socket() -> int:
    """A route netlink socket of the calling thread's namespace, as a file descriptor
    (a socket stays in the namespace it was made in)."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE).detach()


def create(ns: str) -> None:
    """Make the named namespace ``ns`` (``ip netns add``), with ``lo`` up."""
    run_in(ns, lambda: None, create=True)


@contextlib.contextmanager
def iproute(ns: str) -> Iterator[Any]:
    """A pyroute2 ``IPRoute`` of namespace ``ns``, as ``IPRoute(netns=ns)`` without
    its forked helper."""
    with IPRoute(fileno=run_in(ns, netlink_socket)) as ipr:
        yield ipr
