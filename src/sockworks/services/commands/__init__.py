"""RESP command families beyond strings, one module each (hashes, lists,
sets, zsets, bitmaps, keys): each holds its ``SPECS`` (Redis 7's arity,
flags and key positions, as ``COMMAND INFO`` reports them); ``model.py``
has the handler they share, which hands the command to
``Store.execute_command``. ``resp_table.py`` registers them all.
"""
