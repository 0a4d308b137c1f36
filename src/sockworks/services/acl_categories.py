"""Redis's ACL categories of every RESP command, as a static table.

Taken from Redis 7's command metadata (``COMMAND INFO name``, the seventh
field: ``@read @string @fast`` for GET); tests/services/test_acl_categories.py
checks each row against a real redis-server, and that every command of the
table in ``resp_table.py`` has one. A container command's subcommands
(``config|get``) have rows of their own, as in Redis. A command missing here
(added to the command table later) gets categories from its flags
(:func:`categories_of`), so it is never left outside ``+@all``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["CATEGORIES", "COMMAND_CATEGORIES", "CONTAINERS", "categories_of"]

#: Every category Redis 7 defines, in ACL CAT's order. Those with no
#: command here (data types this server does not have yet) are accepted in
#: rules and simply match nothing.
CATEGORIES: Final = ("keyspace", "read", "write", "set", "sortedset", "list", "hash", "string",
                     "bitmap", "hyperloglog", "geo", "stream", "pubsub", "admin", "fast",
                     "slow", "blocking", "dangerous", "connection", "transaction", "scripting")

#: command (or "container|subcommand") -> its categories, Redis's order.
COMMAND_CATEGORIES: Final[Mapping[str, tuple[str, ...]]] = {
    "get": ("read", "string", "fast"),
    "mget": ("read", "string", "fast"),
    "set": ("write", "string", "slow"),
    "setnx": ("write", "string", "fast"),
    "setex": ("write", "string", "slow"),
    "psetex": ("write", "string", "slow"),
    "mset": ("write", "string", "slow"),
    "del": ("keyspace", "write", "slow"),
    "unlink": ("keyspace", "write", "fast"),
    "exists": ("keyspace", "read", "fast"),
    "incr": ("write", "string", "fast"),
    "decr": ("write", "string", "fast"),
    "incrby": ("write", "string", "fast"),
    "decrby": ("write", "string", "fast"),
    "expire": ("keyspace", "write", "fast"),
    "pexpire": ("keyspace", "write", "fast"),
    "ttl": ("keyspace", "read", "fast"),
    "pttl": ("keyspace", "read", "fast"),
    "persist": ("keyspace", "write", "fast"),
    "expireat": ("keyspace", "write", "fast"),
    "pexpireat": ("keyspace", "write", "fast"),
    "getset": ("write", "string", "fast"),
    "getdel": ("write", "string", "fast"),
    "getex": ("write", "string", "fast"),
    "strlen": ("read", "string", "fast"),
    "append": ("write", "string", "fast"),
    "getrange": ("read", "string", "slow"),
    "substr": ("read", "string", "slow"),
    "setrange": ("write", "string", "slow"),
    "incrbyfloat": ("write", "string", "fast"),
    "msetnx": ("write", "string", "slow"),
    "rename": ("keyspace", "write", "slow"),
    "renamenx": ("keyspace", "write", "fast"),
    "type": ("keyspace", "read", "fast"),
    "dbsize": ("keyspace", "read", "fast"),
    "flushdb": ("keyspace", "write", "slow", "dangerous"),
    "flushall": ("keyspace", "write", "slow", "dangerous"),
    "keys": ("keyspace", "read", "slow", "dangerous"),
    "scan": ("keyspace", "read", "slow"),
    "ping": ("fast", "connection"),
    "echo": ("fast", "connection"),
    "select": ("fast", "connection"),
    "info": ("slow", "dangerous"),
    "time": ("fast",),
    "lastsave": ("admin", "fast", "dangerous"),
    "bgrewriteaof": ("admin", "slow", "dangerous"),
    # sockworks's own name for BGREWRITEAOF (same handler, same rights).
    "compact": ("admin", "slow", "dangerous"),
    "client": ("slow",),
    "client|setname": ("slow", "connection"),
    "client|getname": ("slow", "connection"),
    "client|id": ("slow", "connection"),
    "client|info": ("slow", "connection"),
    "client|list": ("admin", "slow", "dangerous", "connection"),
    "client|setinfo": ("slow", "connection"),  # Redis 7.2
    "client|kill": ("admin", "slow", "dangerous", "connection"),
    "client|unblock": ("admin", "slow", "dangerous", "connection"),
    "client|no-evict": ("admin", "slow", "dangerous", "connection"),
    "client|no-touch": ("fast", "connection"),  # Redis 7.2
    "client|help": ("slow", "connection"),
    "config": ("slow",),
    "config|get": ("admin", "slow", "dangerous"),
    "config|set": ("admin", "slow", "dangerous"),
    "config|resetstat": ("admin", "slow", "dangerous"),
    "command": ("slow", "connection"),
    "command|count": ("slow", "connection"),
    "command|docs": ("slow", "connection"),
    "command|info": ("slow", "connection"),
    "command|list": ("slow", "connection"),
    "command|getkeys": ("slow", "connection"),
    "command|help": ("slow", "connection"),
    "memory": ("slow",),
    "memory|usage": ("read", "slow"),
    "memory|help": ("slow",),
    "hello": ("fast", "connection"),
    "auth": ("fast", "connection"),
    "multi": ("fast", "transaction"),
    "exec": ("slow", "transaction"),
    "discard": ("fast", "transaction"),
    "watch": ("fast", "transaction"),
    "unwatch": ("fast", "transaction"),
    "quit": ("fast", "connection"),
    "reset": ("fast", "connection"),
    "acl": ("slow",),
    "acl|whoami": ("slow",),
    "acl|list": ("admin", "slow", "dangerous"),
    "acl|users": ("admin", "slow", "dangerous"),
    "acl|cat": ("slow",),
    "acl|load": ("admin", "slow", "dangerous"),
    # The data types (issue #12), from the same COMMAND INFO.
    "object": ("slow",),
    "object|encoding": ("keyspace", "read", "slow"),
    "object|freq": ("keyspace", "read", "slow"),
    "object|idletime": ("keyspace", "read", "slow"),
    "object|refcount": ("keyspace", "read", "slow"),
    "object|help": ("keyspace", "slow"),
    "copy": ("keyspace", "write", "slow"),
    "randomkey": ("keyspace", "read", "slow"),
    "touch": ("keyspace", "read", "fast"),
    "expiretime": ("keyspace", "read", "fast"),
    "pexpiretime": ("keyspace", "read", "fast"),
    "sort": ("write", "set", "sortedset", "list", "slow", "dangerous"),
    "sort_ro": ("read", "set", "sortedset", "list", "slow", "dangerous"),
    "hset": ("write", "hash", "fast"),
    "hsetnx": ("write", "hash", "fast"),
    "hget": ("read", "hash", "fast"),
    "hmget": ("read", "hash", "fast"),
    "hmset": ("write", "hash", "fast"),
    "hdel": ("write", "hash", "fast"),
    "hlen": ("read", "hash", "fast"),
    "hstrlen": ("read", "hash", "fast"),
    "hexists": ("read", "hash", "fast"),
    "hkeys": ("read", "hash", "slow"),
    "hvals": ("read", "hash", "slow"),
    "hgetall": ("read", "hash", "slow"),
    "hincrby": ("write", "hash", "fast"),
    "hincrbyfloat": ("write", "hash", "fast"),
    "hrandfield": ("read", "hash", "slow"),
    "hscan": ("read", "hash", "slow"),
    "lpush": ("write", "list", "fast"),
    "rpush": ("write", "list", "fast"),
    "lpushx": ("write", "list", "fast"),
    "rpushx": ("write", "list", "fast"),
    "lpop": ("write", "list", "fast"),
    "rpop": ("write", "list", "fast"),
    "llen": ("read", "list", "fast"),
    "lrange": ("read", "list", "slow"),
    "lindex": ("read", "list", "slow"),
    "lset": ("write", "list", "slow"),
    "linsert": ("write", "list", "slow"),
    "lrem": ("write", "list", "slow"),
    "ltrim": ("write", "list", "slow"),
    "lpos": ("read", "list", "slow"),
    "lmove": ("write", "list", "slow"),
    "rpoplpush": ("write", "list", "slow"),
    "lmpop": ("write", "list", "slow"),
    "blpop": ("write", "list", "slow", "blocking"),
    "brpop": ("write", "list", "slow", "blocking"),
    "blmove": ("write", "list", "slow", "blocking"),
    "brpoplpush": ("write", "list", "slow", "blocking"),
    "blmpop": ("write", "list", "slow", "blocking"),
    "sadd": ("write", "set", "fast"),
    "srem": ("write", "set", "fast"),
    "scard": ("read", "set", "fast"),
    "sismember": ("read", "set", "fast"),
    "smismember": ("read", "set", "fast"),
    "smembers": ("read", "set", "slow"),
    "spop": ("write", "set", "fast"),
    "srandmember": ("read", "set", "slow"),
    "smove": ("write", "set", "fast"),
    "sinter": ("read", "set", "slow"),
    "sintercard": ("read", "set", "slow"),
    "sunion": ("read", "set", "slow"),
    "sdiff": ("read", "set", "slow"),
    "sinterstore": ("write", "set", "slow"),
    "sunionstore": ("write", "set", "slow"),
    "sdiffstore": ("write", "set", "slow"),
    "sscan": ("read", "set", "slow"),
    "zadd": ("write", "sortedset", "fast"),
    "zincrby": ("write", "sortedset", "fast"),
    "zscore": ("read", "sortedset", "fast"),
    "zmscore": ("read", "sortedset", "fast"),
    "zcard": ("read", "sortedset", "fast"),
    "zcount": ("read", "sortedset", "fast"),
    "zlexcount": ("read", "sortedset", "fast"),
    "zrank": ("read", "sortedset", "fast"),
    "zrevrank": ("read", "sortedset", "fast"),
    "zrange": ("read", "sortedset", "slow"),
    "zrangestore": ("write", "sortedset", "slow"),
    "zrevrange": ("read", "sortedset", "slow"),
    "zrangebyscore": ("read", "sortedset", "slow"),
    "zrevrangebyscore": ("read", "sortedset", "slow"),
    "zrangebylex": ("read", "sortedset", "slow"),
    "zrevrangebylex": ("read", "sortedset", "slow"),
    "zrem": ("write", "sortedset", "fast"),
    "zremrangebyrank": ("write", "sortedset", "slow"),
    "zremrangebyscore": ("write", "sortedset", "slow"),
    "zremrangebylex": ("write", "sortedset", "slow"),
    "zpopmin": ("write", "sortedset", "fast"),
    "zpopmax": ("write", "sortedset", "fast"),
    "bzpopmin": ("write", "sortedset", "fast", "blocking"),
    "bzpopmax": ("write", "sortedset", "fast", "blocking"),
    "bzmpop": ("write", "sortedset", "slow", "blocking"),
    "zrandmember": ("read", "sortedset", "slow"),
    "zunionstore": ("write", "sortedset", "slow"),
    "zinterstore": ("write", "sortedset", "slow"),
    "zdiffstore": ("write", "sortedset", "slow"),
    "zunion": ("read", "sortedset", "slow"),
    "zinter": ("read", "sortedset", "slow"),
    "zdiff": ("read", "sortedset", "slow"),
    "zintercard": ("read", "sortedset", "slow"),
    "zmpop": ("write", "sortedset", "slow"),
    "zscan": ("read", "sortedset", "slow"),
    "setbit": ("write", "bitmap", "slow"),
    "getbit": ("read", "bitmap", "fast"),
    "bitcount": ("read", "bitmap", "slow"),
    "bitpos": ("read", "bitmap", "slow"),
    "bitop": ("write", "bitmap", "slow"),
    "bitfield": ("write", "bitmap", "slow"),
    "bitfield_ro": ("read", "bitmap", "fast"),
    "lcs": ("read", "string", "slow"),
}

#: Commands whose subcommands have categories (and ACL rules) of their own.
CONTAINERS: Final = frozenset(name.split("|")[0] for name in COMMAND_CATEGORIES if "|" in name)


def categories_of(name: str, subcommand: str | None = None,
                  flags: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The categories of ``name`` (``name|subcommand`` for a container); a
    command without a row gets read/write/admin and fast/slow from ``flags``."""
    if subcommand is not None:
        found = COMMAND_CATEGORIES.get(f"{name}|{subcommand}")
        if found is not None:
            return found
    found = COMMAND_CATEGORIES.get(name)
    if found is not None:
        return found
    derived = [c for f, c in (("readonly", "read"), ("write", "write"), ("admin", "admin"))
               if f in flags]
    derived.append("fast" if "fast" in flags else "slow")
    if "admin" in flags:
        derived.append("dangerous")
    return tuple(derived)
