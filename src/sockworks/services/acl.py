"""ACL users and their rules: a practical subset of Redis ACL, in its syntax.

A user is built from Redis's rule words, applied left to right::

    user app on >s3cret ~app:* +@read +@write -@dangerous
    user admin on #<sha256 hex> ~* +@all
    user default off

Supported: ``on``/``off``, ``>password``, ``<password``, ``#hash``,
``!hash``, ``nopass``, ``resetpass``, ``~pattern``, ``allkeys``,
``resetkeys``, ``&pattern``/``allchannels``/``resetchannels`` (pub/sub
channels: a new user has none, Redis 7.0's ``acl-pubsub-default
resetchannels``), ``+@category``/``-@category``,
``+cmd``/``-cmd``, ``+cmd|sub``/``-cmd|sub``, ``allcommands``/
``nocommands``, ``reset``. Errors are Redis's texts (:class:`AclError`).

The permission decision (:meth:`User.may_run`) is the *last* command rule
that names the command, its subcommand or one of its categories: the same
answer as Redis's bitmaps updated rule by rule (a hypothesis test checks it
against such a model). Passwords are kept only as SHA-256 digests and
compared with ``hmac.compare_digest``. ``load_acl_file`` reads a file of
``user`` lines (blank lines and ``#`` comments skipped).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sockworks.services.acl_categories import CATEGORIES, CONTAINERS, categories_of
from sockworks.storage.glob import compile_glob

__all__ = ["AclError", "User", "default_user", "digest", "load_acl_file", "parse_user_line"]

#: Redis's reasons (ACLSetUserStringError), by what went wrong.
UNKNOWN_RULE: Final = "Unknown command or category name in ACL"
SYNTAX: Final = "Syntax error"
BAD_HASH: Final = ("The password hash must be exactly 64 characters and contain only "
                   "lowercase hexadecimal characters")
NO_SUCH_PASSWORD: Final = "The password you are trying to remove from the user does not exist"
AFTER_ALLKEYS: Final = ("Adding a pattern after the * pattern (or the 'allkeys' flag) is not "
                        "valid and does not have any effect. Try 'resetkeys' to start with an "
                        "empty list of patterns")

AFTER_ALLCHANNELS: Final = ("Adding a pattern after the * pattern (or the 'allchannels' flag) "
                            "is not valid and does not have any effect. Try 'resetchannels' to "
                            "start with an empty list of channels")

_HEX64 = re.compile(r"[0-9a-f]{64}")
_USERNAME = re.compile(r"[^\s]+")


class AclError(ValueError):
    """A rule or a file Redis would refuse; ``str()`` is Redis's reason."""


def digest(password: bytes) -> str:
    """The SHA-256 hex digest a password is stored (and shown) as."""
    return hashlib.sha256(password).hexdigest()


#: A command rule: (allow?, kind, name) with kind "all", "cat", "cmd" or "sub"
#: (name "cmd|sub").
Rule = tuple[bool, str, str]


@dataclass(eq=False)
class User:
    """One ACL user (Redis's defaults: off, no password, no keys, no commands)."""

    name: str
    enabled: bool = False
    nopass: bool = False
    #: SHA-256 hex digests, in the order added.
    passwords: list[str] = field(default_factory=list)
    key_patterns: list[bytes] = field(default_factory=list)
    all_channels: bool = False
    #: ``&pattern`` rules (glob patterns of channels), in the order added.
    channel_patterns: list[bytes] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    _matchers: list[Callable[[bytes], bool]] = field(default_factory=list, repr=False)
    _decisions: dict[tuple[str, str | None], bool] = field(default_factory=dict, repr=False)

    # -- building ----------------------------------------------------------------
    def apply(self, rule: str, known: Callable[[str], bool]) -> None:
        """One rule word; ``known(name)`` says whether a command exists."""
        low = rule.lower()
        self._decisions.clear()
        if low == "on":
            self.enabled = True
        elif low == "off":
            self.enabled = False
        elif low == "nopass":
            self.nopass, self.passwords = True, []
        elif low == "resetpass":
            self.nopass, self.passwords = False, []
        elif rule[:1] == ">":
            self._add_hash(digest(rule[1:].encode("utf-8", "surrogateescape")))
        elif rule[:1] == "#":
            if not _HEX64.fullmatch(rule[1:]):
                raise AclError(BAD_HASH)
            self._add_hash(rule[1:])
        elif rule[:1] in ("<", "!"):
            hashed = (digest(rule[1:].encode("utf-8", "surrogateescape")) if rule[0] == "<"
                      else rule[1:])
            if rule[0] == "!" and not _HEX64.fullmatch(hashed):
                raise AclError(BAD_HASH)
            if hashed not in self.passwords:
                raise AclError(NO_SUCH_PASSWORD)
            self.passwords.remove(hashed)
        elif rule[:1] == "~" or low == "allkeys":
            pattern = b"*" if low == "allkeys" else rule[1:].encode("utf-8", "surrogateescape")
            if b"*" in self.key_patterns and pattern != b"*":
                raise AclError(AFTER_ALLKEYS)
            if pattern == b"*":
                self.key_patterns = []
            if pattern not in self.key_patterns:
                self.key_patterns.append(pattern)
            self._matchers = [compile_glob(p) for p in self.key_patterns]
        elif low == "resetkeys":
            self.key_patterns, self._matchers = [], []
        elif low in ("allchannels", "&*"):
            self.all_channels, self.channel_patterns = True, []
        elif low == "resetchannels":
            self.all_channels, self.channel_patterns = False, []
        elif rule[:1] == "&":
            if self.all_channels:
                raise AclError(AFTER_ALLCHANNELS)
            pattern = rule[1:].encode("utf-8", "surrogateescape")
            if pattern not in self.channel_patterns:
                self.channel_patterns.append(pattern)
        elif low in ("allcommands", "nocommands"):
            self.rules = [(low == "allcommands", "all", "all")]
        elif rule[:1] in ("+", "-") and len(rule) > 1:
            self._command_rule(rule[0] == "+", low[1:], known)
        elif low == "reset":
            for word in ("resetpass", "resetkeys", "resetchannels", "off", "-@all"):
                self.apply(word, known)
        else:
            raise AclError(SYNTAX)

    def _add_hash(self, hashed: str) -> None:
        self.nopass = False
        if hashed not in self.passwords:
            self.passwords.append(hashed)

    def _command_rule(self, allow: bool, what: str, known: Callable[[str], bool]) -> None:
        if what.startswith("@"):
            category = what[1:]
            if category == "all":
                self.rules = [(allow, "all", "all")]
                return
            if category not in CATEGORIES:
                raise AclError(UNKNOWN_RULE)
            self.rules.append((allow, "cat", category))
            return
        if "|" in what:
            container, _, sub = what.partition("|")
            if container not in CONTAINERS or not known(what) or not sub:
                raise AclError(UNKNOWN_RULE)
            self.rules.append((allow, "sub", what))
            return
        if not known(what):
            raise AclError(UNKNOWN_RULE)
        self.rules.append((allow, "cmd", what))

    # -- deciding -------------------------------------------------------------------
    @property
    def all_keys(self) -> bool:
        return b"*" in self.key_patterns

    @property
    def unrestricted(self) -> bool:
        """Every command on every key: the session may skip the checks."""
        return (self.all_keys and self.all_channels and bool(self.rules)
                and self.rules == [(True, "all", "all")])

    def may_run(self, name: str, subcommand: str | None = None,
                flags: tuple[str, ...] = ()) -> bool:
        """May this user run ``name`` (lower case; ``subcommand`` for a container)?"""
        key = (name, subcommand)
        decided = self._decisions.get(key)
        if decided is None:
            decided = self._decide(name, subcommand, flags)
            self._decisions[key] = decided
        return decided

    def _decide(self, name: str, subcommand: str | None, flags: tuple[str, ...]) -> bool:
        categories = categories_of(name, subcommand, flags)
        full = f"{name}|{subcommand}" if subcommand is not None else None
        for allow, kind, what in reversed(self.rules):
            if (kind == "all" or (kind == "cat" and what in categories)
                    or (kind == "cmd" and what == name) or (kind == "sub" and what == full)):
                return allow
        return False

    def may_access(self, keys: Iterable[bytes]) -> bool:
        """Does every key match one of the user's key patterns?"""
        if self.all_keys:
            return True
        matchers = self._matchers
        return all(any(match(key) for match in matchers) for key in keys)

    def may_use_channels(self, channels: Iterable[bytes], *, patterns: bool = False) -> bool:
        """May this user publish to / subscribe to every one of ``channels``?
        A PSUBSCRIBE pattern must be one of the user's patterns literally
        (Redis's rule: a pattern cannot be proven inside another)."""
        if self.all_channels:
            return True
        allowed = self.channel_patterns
        if patterns:
            return all(channel in allowed for channel in channels)
        return all(any(compile_glob(p)(channel) for p in allowed) for channel in channels)

    def check_password(self, password: bytes) -> bool:
        """Constant-time: every stored digest is compared, whatever matches."""
        if self.nopass:
            return True
        offered = digest(password).encode()
        found = False
        for stored in self.passwords:
            found |= hmac.compare_digest(offered, stored.encode())
        return found

    # -- showing ---------------------------------------------------------------------
    def describe(self) -> str:
        """The ACL LIST line: Redis's order (flags, passwords, keys, channels,
        commands); command rules as given after a leading ``-@all``."""
        parts = ["user", self.name, "on" if self.enabled else "off"]
        if self.nopass:
            parts.append("nopass")
        parts.extend("#" + h for h in self.passwords)
        if self.all_keys:
            parts.append("~*")
        else:
            parts.extend("~" + p.decode("utf-8", "surrogateescape") for p in self.key_patterns)
        if self.all_channels:
            parts.append("&*")
        else:
            parts.append("resetchannels")
            parts.extend("&" + p.decode("utf-8", "surrogateescape")
                         for p in self.channel_patterns)
        rules = list(self.rules)
        if rules and rules[0] == (True, "all", "all"):
            parts.append("+@all")
            rules = rules[1:]
        else:
            parts.append("-@all")
            if rules and rules[0][1] == "all":
                rules = rules[1:]
        for allow, kind, what in rules:
            parts.append(("+" if allow else "-") + ("@" + what if kind == "cat" else what))
        return " ".join(parts)


def default_user(password: bytes | None = None) -> User:
    """Redis's out-of-the-box ``default``: on, every key and command; no
    password (nopass) unless ``password`` (requirepass) is given."""
    user = User("default", enabled=True, key_patterns=[b"*"], all_channels=True,
                rules=[(True, "all", "all")], _matchers=[compile_glob(b"*")])
    if password is None:
        user.nopass = True
    else:
        user.passwords = [digest(password)]
    return user


def parse_user_line(words: Sequence[str], known: Callable[[str], bool]) -> User:
    """``["user", NAME, rule...]`` -> User; AclError with Redis's reason."""
    if len(words) < 2 or words[0] != "user" or not _USERNAME.fullmatch(words[1]):
        raise AclError("should start with user keyword followed by the username")
    user = User(words[1])
    for word in words[2:]:
        try:
            user.apply(word, known)
        except AclError as exc:
            raise AclError(f"Error in applying operation '{word}': {exc}") from None
    return user


def load_acl_file(path: str | Path, known: Callable[[str], bool]) -> dict[str, User]:
    """Users by name from an ACL file; ``default`` as Redis's if the file
    does not define it. AclError "PATH:LINE: reason" for the first bad line."""
    try:
        text = Path(path).read_text("utf-8", "surrogateescape")
    except OSError as exc:
        raise AclError(f"Error loading ACLs, opening file '{path}': "
                       f"{exc.strerror or exc}") from None
    users: dict[str, User] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        try:
            user = parse_user_line(words, known)
        except AclError as exc:
            reason = str(exc)
            glue = " " if reason.startswith("should") else ": "
            raise AclError(f"{path}:{number}{glue}{reason}") from None
        if user.name in users:
            raise AclError(f"{path}:{number}: Duplicate user '{user.name}' found")
        users[user.name] = user
    users.setdefault("default", default_user())
    return users
