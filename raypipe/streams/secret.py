"""Broker credentials kept out of reprs and messages: :class:`Secret` and :func:`masked_url`.

The driver reads a subscription's password from its ``password_env`` and hands it to
the consumer actor wrapped in a :class:`Secret`, so Ray's logs and actor reprs never
show it; broker URLs in messages go through :func:`masked_url`. Example::

    Secret("hunter2")                          # Secret(***)
    masked_url("nats://app:hunter2@host:4222")  # 'nats://app:***@host:4222'
"""

from __future__ import annotations

import urllib.parse

__all__ = ["Secret", "masked_url"]


class Secret:
    """A password handed to a consumer actor; its repr never shows it."""

    def __init__(self, value: str | None):
        self._value = value

    def get(self) -> str | None:
        """The secret value."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)" if self._value else "Secret(None)"


def masked_url(url: str) -> str:
    """The URL without its password (for messages)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))
