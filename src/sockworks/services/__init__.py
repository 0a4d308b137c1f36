"""The services: echo, key-value (text and RESP), UDP JSON, multicast.

Each is a :class:`sockworks.Service` (TCP, run by :class:`sockworks.Server`)
except UDP JSON and multicast, which own their datagram sockets.
"""

from sockworks.services.echo import EchoService
from sockworks.services.kv import KvService
from sockworks.services.resp import RespService
from sockworks.services.udp import UdpJsonService

__all__ = ["EchoService", "KvService", "RespService", "UdpJsonService"]
