"""Logging set-up for every command: console, optional rotating file, text or JSON.

The chapter's advice (use ``logging``, timestamps and levels, console and file)
plus what production needs: a file that rotates instead of filling the disk,
JSON lines for log shippers, and a rate limiter for messages a flood could
otherwise repeat thousands of times a second.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import threading
import time

__all__ = ["configure_logging", "reopen_log_files", "set_log_level", "make_formatter",
           "log_in_signal_handler",
           "RateLimitedLog", "LOG_FORMATS", "LOG_LEVELS"]

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: Rotate at 10 MiB and keep 5 old files: bounded disk use by default.
LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 5

TEXT_FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, pid (+ exc)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def make_formatter(fmt: str) -> logging.Formatter:
    """The formatter of ``--log-format`` (text or json)."""
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(
    level: str = "INFO", log_file: str | None = None, fmt: str = "text"
) -> None:
    """Install handlers on the root logger (idempotent: replaces earlier ones)."""
    formatter = make_formatter(fmt)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    root.addHandler(console)
    if log_file:
        file_handler = ReopenableFileHandler(
            log_file, maxBytes=LOG_FILE_MAX_BYTES, backupCount=LOG_FILE_BACKUPS,
            encoding="utf-8",
        )
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
    root.setLevel(level.upper())


class ReopenableFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file handler that reopens its file on request (SIGHUP, for
    logrotate's ``postrotate``: the file was moved away, write a new one).

    :meth:`request_reopen` only sets a flag, so a signal handler may call it;
    the reopen happens under the handler's lock before the next record.
    """

    reopen_requested = False

    def request_reopen(self) -> None:
        self.reopen_requested = True

    def emit(self, record: logging.LogRecord) -> None:
        if self.reopen_requested:
            self.reopen_requested = False
            if self.stream is not None:
                self.stream.close()
            self.stream = self._open()
        super().emit(record)


def reopen_log_files() -> None:
    """Have every ``--log-file`` handler reopen its path before its next line."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, ReopenableFileHandler):
            handler.request_reopen()


def log_in_signal_handler(log: logging.Logger, level: int, msg: str, *args: object,
                          exc_info: bool = False) -> None:
    """Log from a signal handler without risking the handler's work.

    Python runs a handler in the main thread between two bytecodes, possibly
    in the middle of that thread writing a log line: the handler's own line
    then re-enters the stream's buffered writer, which raises RuntimeError
    ("reentrant call"), and logging's error report re-enters it again and
    raises out of the handler. Left unguarded, a SIGTERM that arrived while
    ``listening on`` was being written lost its stop request (issue #14: the
    prefork stop hang under systemd-socket-activate, whose pipe reader sent
    SIGTERM the instant it read that line). Here the line is dropped instead.
    """
    try:
        log.log(level, msg, *args, exc_info=exc_info)
    except Exception:   # nowhere left to report it
        pass


def set_log_level(level: str) -> None:
    """The root logger's level (``--log-level``), at run time (SIGHUP)."""
    logging.getLogger().setLevel(level.upper())


class RateLimitedLog:
    """Log a repeated event at most once per ``interval`` seconds, with a count
    of how many were suppressed in between (refused connections, EMFILE)."""

    def __init__(self, logger: logging.Logger, level: int, interval: float = 5.0) -> None:
        self._logger = logger
        self._level = level
        self._interval = interval
        self._last = -interval
        self._suppressed = 0
        self._lock = threading.Lock()

    def __call__(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self._interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._last = now
        if suppressed:
            self._logger.log(self._level, msg + " (%d more suppressed)", *args, suppressed)
        else:
            self._logger.log(self._level, msg, *args)
