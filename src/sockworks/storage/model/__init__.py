"""The Redis data model of the embedded store: typed values and the commands
on them (hashes, lists, sets, sorted sets, bitmaps, keyspace commands).

``values.py`` has the value classes and their size accounting and encodings;
``common.py`` the argument parsing and error texts every family shares;
``keyspace.py`` the narrow view of the store a command gets (lock held);
one module per family implements its commands as ``fn(ks, argv) -> reply``;
``table.py`` maps command names to them. Replies are values of
:mod:`sockworks.protocols.resp`'s vocabulary (bytes, int, None, list,
SimpleString, Map, RespSet, Double, NULL_ARRAY), so the same reply encodes
to RESP2 and RESP3.
"""
