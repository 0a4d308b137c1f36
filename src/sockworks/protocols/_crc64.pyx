# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Redis's CRC64 (Jones polynomial, reflected; crc64.c), compiled (Cython).

Optional, as services/_fastpath.pyx: the build compiles this when the
machine has a C compiler (setup.py), and :mod:`sockworks.protocols.rdb`
uses it unless ``SOCKWORKS_NO_EXTENSIONS=1``; ``rdb.crc64_pure`` is the
reference it must match (tests/protocols/test_crc64.py). Slicing-by-8: eight
tables of 256 entries, eight input bytes per step, with the GIL released
(a 512 MB payload is checked at memory-bandwidth speed while other threads
run).
"""

from libc.stdint cimport uint64_t

cdef uint64_t _TABLES[8][256]


cdef void _build(uint64_t poly) noexcept:
    cdef int n, k
    cdef uint64_t crc
    for n in range(256):
        crc = n
        for k in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        _TABLES[0][n] = crc
    for n in range(256):
        crc = _TABLES[0][n]
        for k in range(1, 8):
            crc = _TABLES[0][crc & 0xFF] ^ (crc >> 8)
            _TABLES[k][n] = crc


_build(0x95AC9329AC4BC9B5)


cdef uint64_t _crc(uint64_t crc, const unsigned char *p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t w
    while n >= 8:
        # Little-endian load, byte by byte (no alignment or endianness assumption).
        w = crc ^ (<uint64_t>p[0] | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16)
                   | (<uint64_t>p[3] << 24) | (<uint64_t>p[4] << 32) | (<uint64_t>p[5] << 40)
                   | (<uint64_t>p[6] << 48) | (<uint64_t>p[7] << 56))
        crc = (_TABLES[7][w & 0xFF] ^ _TABLES[6][(w >> 8) & 0xFF]
               ^ _TABLES[5][(w >> 16) & 0xFF] ^ _TABLES[4][(w >> 24) & 0xFF]
               ^ _TABLES[3][(w >> 32) & 0xFF] ^ _TABLES[2][(w >> 40) & 0xFF]
               ^ _TABLES[1][(w >> 48) & 0xFF] ^ _TABLES[0][w >> 56])
        p += 8
        n -= 8
    while n > 0:
        crc = _TABLES[0][(crc ^ p[0]) & 0xFF] ^ (crc >> 8)
        p += 1
        n -= 1
    return crc


def crc64(const unsigned char[:] data, uint64_t crc=0):
    """Redis's crc64 of ``data`` (any buffer of bytes), from ``crc``."""
    cdef Py_ssize_t n = data.shape[0]
    if n == 0:
        return crc
    with nogil:
        crc = _crc(crc, &data[0], n)
    return crc
