"""ACL on the RESP port: WHOAMI, LIST, USERS, CAT, LOAD and SETUSER.

Users are defined by ``--aclfile`` (``acl.py`` reads it); ``ACL LOAD``
re-reads it (a bad file leaves the rules in force and answers Redis's
error). ``ACL SETUSER`` changes a user in memory, all its rules or none,
as Redis does; there is no ACL SAVE: what SETUSER did lasts until ACL LOAD
or a restart. Replies and error texts are Redis 7.0's.
"""

from __future__ import annotations

from sockworks.protocols.resp import OK, encode, encode_bulk
from sockworks.services.acl import AclError
from sockworks.services.acl_categories import CATEGORIES, COMMAND_CATEGORIES
from sockworks.services.auth import NO_ACL_FILE
from sockworks.services.resp_commands import error_quoting, quoted, unknown_subcommand, wrong_args
from sockworks.services.resp_context import CommandContext as Ctx

__all__: list[str] = []  # resp_table.py imports cmd_acl by name

#: Subcommand -> (min, max) argument count (including ACL and the subcommand).
_ARITY: dict[bytes, tuple[int, int | None]] = {
    b"WHOAMI": (2, 2), b"LIST": (2, 2), b"USERS": (2, 2), b"LOAD": (2, 2), b"CAT": (2, 3),
    b"SETUSER": (3, None)}
#: Bytes a username may not hold (Redis's ACLStringHasSpaces: isspace, NUL).
_NOT_IN_NAMES = frozenset(b" \t\n\v\f\r\0")


def cmd_acl(s: Ctx, argv: list[bytes]) -> bytes:
    sub = argv[1].upper()
    if sub not in _ARITY:
        return unknown_subcommand(argv)
    low, high = _ARITY[sub]
    if len(argv) < low or (high is not None and len(argv) > high):
        if sub == b"CAT":
            return error_quoting("ERR unknown subcommand or wrong number of arguments for "
                                 f"'{quoted(argv[1])}'. Try ACL HELP.")
        return wrong_args("acl|" + sub.decode().lower())
    access = s.server.access
    if sub == b"WHOAMI":
        return encode_bulk((s.username or "default").encode())
    if sub == b"USERS":
        return encode([u.name.encode() for u in access.users()], s.proto)
    if sub == b"LIST":
        return encode([u.describe().encode("utf-8", "surrogateescape")
                       for u in access.users()], s.proto)
    if sub == b"CAT":
        if len(argv) == 2:
            return encode([c.encode() for c in CATEGORIES], s.proto)
        category = argv[2].decode("latin-1").lower()
        if category not in CATEGORIES:
            return error_quoting(f"ERR Unknown category '{quoted(argv[2])}'")
        names = [name.encode() for name, cats in COMMAND_CATEGORIES.items()
                 if category in cats]
        return encode(names, s.proto)
    if sub == b"SETUSER":
        if _NOT_IN_NAMES.intersection(argv[2]):
            return error_quoting("ERR Usernames can't contain spaces or null characters")
        try:
            access.set_user(argv[2].decode("utf-8", "surrogateescape"),
                            [word.decode("utf-8", "surrogateescape") for word in argv[3:]])
        except AclError as exc:
            return error_quoting(f"ERR {exc}")
        return OK
    if access.aclfile is None:
        return error_quoting(f"ERR {NO_ACL_FILE}")
    try:
        access.reload()
    except AclError as exc:
        return error_quoting(f"ERR {exc}. WARNING: ACL errors detected, no change to the "
                             "previously active ACL rules was performed")
    return OK
