"""Who may connect and who is who: passwords, ACL users, protected mode.

:class:`AccessControl` is shared by the text and RESP ports of one server:
the users in force (``--requirepass``/``--requirepass-file`` give the
``default`` user a password; ``--aclfile`` defines users in Redis's syntax,
see ``acl.py``), authentication with constant-time comparison, failure
counters (INFO stats ``acl_access_denied_*``, STATS) and a rate-limited log
of failed attempts, ``ACL LOAD`` and ``ACL SETUSER``, and Redis's protected mode: while the
``default`` user needs no password, peers that are not on the loopback
interface are refused (``--protected-mode no`` turns that off). Sessions
keep the :class:`~sockworks.services.acl.User` they authenticated as and
re-read it when :attr:`AccessControl.generation` changes.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Final

from sockworks.core.logs import RateLimitedLog
from sockworks.services.acl import AclError, User, default_user, load_acl_file
from sockworks.services.acl_categories import COMMAND_CATEGORIES

__all__ = ["AccessControl", "DENIED_TEXT", "NO_ACL_FILE", "check_acl_file", "is_loopback",
           "known_command"]

logger = logging.getLogger(__name__)

#: Redis's protected-mode explanation, worded for sockworks's flags.
DENIED_TEXT: Final = (
    "Sockworks is running in protected mode because protected mode is enabled and no "
    "password is set for the default user. In this mode connections are only accepted "
    "from the loopback interface. If you want to connect from external computers to "
    "Sockworks you may adopt one of the following solutions: 1) Set a password: restart "
    "the server with '--requirepass-file PATH' (or '--requirepass'), or give it users with "
    "passwords with '--aclfile PATH'. 2) Just disable protected mode sending the command "
    "'CONFIG SET protected-mode no' from the loopback interface by connecting to the RESP "
    "port from the same host the server is running, however MAKE SURE the server is not "
    "publicly accessible from internet if you do so. 3) If you started the server manually "
    "just for testing, restart it with the '--protected-mode no' option. NOTE: You only "
    "need to do one of the above things in order for the server to start accepting "
    "connections from the outside.")


#: ACL LOAD without --aclfile (Redis's text).
NO_ACL_FILE: Final = ("This Redis instance is not configured to use an ACL file. You may want "
                      "to specify users via the ACL SETUSER command and then issue a CONFIG "
                      "REWRITE (assuming you have a Redis configuration file set) in order to "
                      "store users in the Redis configuration.")


def known_command(name: str) -> bool:
    """Whether an ACL rule may name ``name`` (a command, or ``container|sub``).

    Every command of the RESP table has a row in acl_categories (a test checks it).
    """
    return name in COMMAND_CATEGORIES


def is_loopback(host: str) -> bool:
    """Is ``host`` (an address, maybe ``[v6]`` or v4-mapped) on loopback?
    Anything that is not an IP address counts as local: a TCP peer always is
    one, so that is a UNIX socket's path (absolute or relative)."""
    host = host.strip("[]").split("%")[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def peer_host(peer: str) -> str:
    """The address part of a model's "host:port" peer string."""
    host, sep, _ = peer.rpartition(":")
    return host if sep else peer


class AccessControl:
    """The users in force and the rules of entry, for every port of a server."""

    def __init__(self, *, requirepass: bytes | None = None, aclfile: str | None = None,
                 protected_mode: bool = True,
                 known: Callable[[str], bool] = known_command) -> None:
        self.aclfile = aclfile
        self.protected_mode = protected_mode
        self._known = known
        self._lock = threading.Lock()
        self._requirepass = requirepass
        #: Bumped whenever users change (ACL LOAD, CONFIG SET requirepass).
        self.generation = 0
        if aclfile is not None and requirepass is not None:
            raise ValueError("give either a password (requirepass) or an ACL file, not both: "
                             "set the default user's password in the ACL file "
                             "('user default on >PASSWORD ~* +@all')")
        self._users: Mapping[str, User] = (
            load_acl_file(aclfile, known) if aclfile is not None
            else {"default": default_user(requirepass)})
        self.denied_auth = 0
        self.denied_cmd = 0
        self.denied_key = 0
        self._auth_log = RateLimitedLog(logger, logging.WARNING)
        self._warned: set[str] = set()
        #: Hosts the server's ports are bound to (CONFIG GET bind).
        self.listening: list[str] = []

    # -- the users ---------------------------------------------------------------
    @property
    def requirepass(self) -> bytes | None:
        return self._requirepass

    def user(self, name: str) -> User | None:
        return self._users.get(name)

    def users(self) -> list[User]:
        return sorted(self._users.values(), key=lambda u: u.name)

    def initial_user(self) -> User | None:
        """The user a new connection starts as: ``default`` when it is on and
        needs no password, else None (the client must AUTH first)."""
        user = self._users.get("default")
        return user if user is not None and user.enabled and user.nopass else None

    @property
    def open(self) -> bool:
        """No password is needed to use the server (protected mode's test)."""
        return self.initial_user() is not None

    @property
    def passwordless_default(self) -> bool:
        """The default user takes no password: AUTH with one is refused."""
        user = self._users.get("default")
        return user is not None and user.nopass

    def authenticate(self, name: str, password: bytes, peer: str) -> User | None:
        """The user, if ``password`` is theirs and they are on; else None
        (counted, and logged at most once per 5 s)."""
        user = self._users.get(name)
        ok = user is not None and user.check_password(password) and user.enabled
        if ok:
            return user
        with self._lock:
            self.denied_auth += 1
        self._auth_log("failed authentication as %r from %s", name, peer)
        return None

    def count_denied(self, *, key: bool) -> None:
        with self._lock:
            if key:
                self.denied_key += 1
            else:
                self.denied_cmd += 1

    def counters(self) -> dict[str, int]:
        """INFO stats / STATS fields, Redis's names."""
        with self._lock:
            return {"acl_access_denied_auth": self.denied_auth,
                    "acl_access_denied_cmd": self.denied_cmd,
                    "acl_access_denied_key": self.denied_key,
                    "acl_access_denied_channel": 0}

    def set_requirepass(self, password: bytes | None) -> None:
        """CONFIG SET requirepass: the default user's one password (b"" or
        None: none, nopass), as Redis."""
        user = default_user(password or None)
        old = self._users.get("default")
        if old is not None and self.aclfile is not None:
            # Keep the file's rules for default; only its password changes.
            old.apply("resetpass", self._known)
            old.apply(f">{(password or b'').decode('utf-8', 'surrogateescape')}"
                      if password else "nopass", self._known)
            user = old
        with self._lock:
            self._requirepass = password or None
            self._users = {**self._users, "default": user}
            self.generation += 1

    def set_user(self, name: str, words: Sequence[str]) -> None:
        """ACL SETUSER: create ``name`` or change it, all the rules or none
        (AclError with Redis's reason naming the rule). In memory, as in
        Redis: ACL LOAD goes back to the file."""
        old = self._users.get(name)
        user = User(name) if old is None else replace(
            old, passwords=list(old.passwords), key_patterns=list(old.key_patterns),
            channel_patterns=list(old.channel_patterns), rules=list(old.rules),
            _matchers=list(old._matchers), _decisions={})
        for word in words:
            try:
                user.apply(word, self._known)
            except AclError as exc:
                raise AclError(f"Error in ACL SETUSER modifier '{word}': {exc}") from None
        with self._lock:
            self._users = {**self._users, name: user}
            self.generation += 1

    def reload(self) -> None:
        """ACL LOAD: the file again; AclError (the old users stay) if bad."""
        if self.aclfile is None:
            raise AclError(NO_ACL_FILE)
        users = load_acl_file(self.aclfile, self._known)
        with self._lock:
            self._users = users
            self.generation += 1

    # -- protected mode --------------------------------------------------------------
    def refuses(self, peer: str) -> bool:
        """Protected mode: no password needed and ``peer`` is not local."""
        return self.protected_mode and self.open and not is_loopback(peer_host(peer))

    def note_listening(self, service: str, host: str, port: int) -> None:
        """Warn (once per address) when a port is reachable from other hosts
        with no password needed."""
        self.listening.append(host)
        if is_loopback(host) or not self.open:
            return
        where = f"{host}:{port}"
        if where in self._warned:
            return
        self._warned.add(where)
        what = ("protected mode refuses peers that are not on loopback"
                if self.protected_mode else "--protected-mode no: ANY host that can reach "
                "it can read, write and delete every key")
        logger.warning("the %s port %s is exposed beyond loopback and no password is set "
                       "(%s); set --requirepass-file or --aclfile (docs/security.md)",
                       service, where, what)


def check_acl_file(path: str) -> None:
    """Start-up: raise AclError "PATH:LINE: reason" for a bad file."""
    load_acl_file(path, known_command)
