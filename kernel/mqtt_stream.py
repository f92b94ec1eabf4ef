"""paho's client for a subscriber that takes thousands of QoS 1 messages a second (the collector).

paho reads each packet with three or four socket reads (its first byte, each byte of its
length, its body), builds a `Properties` object and a message with its own lock for every
PUBLISH, and sends each PUBACK as its own TLS record after waking its thread through a socket
pair. At the collector's rates that costs more CPU than checking the events does. This client
changes three things and nothing else:

- reads: up to 64 KiB per read, and every whole packet in them is handled in turn (paho's own
  handlers; what remains of a packet waits in the buffer for the next read);
- a QoS 1 PUBLISH without properties goes straight to `sink` (topic, payload, qos, retain,
  mid), with paho's callback lock held as paho holds it; any other packet, or a PUBLISH with
  properties or a topic that is not UTF-8, takes paho's own path;
- `ack_many` queues the PUBACKs of a whole batch as one write (the same bytes `ack` sends one
  by one, in the same order).

Everything else — connecting, TLS, keepalive, reconnecting, publishing, the session — is paho's.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket

READ_SIZE = 1 << 16
_PUBACK = struct.Struct("!BBH")

Sink = Callable[[str, bytes, int, bool, int], None]
"""(topic, payload, qos, retain, mid) of a QoS 1 PUBLISH, on paho's network thread."""


class StreamClient(mqtt.Client):
    """`mqtt.Client` with buffered reads, a direct path for plain QoS 1 PUBLISHes (`sink`) and
    batched acknowledgements (`ack_many`). Without a sink every PUBLISH takes paho's path."""

    sink: Sink | None = None
    direct = 0
    """PUBLISHes handed straight to the sink so far."""
    _rbuf: bytearray | None = None

    def ack_many(self, mids: Iterable[int]) -> None:
        """`ack(mid, 1)` for each mid, queued as one write (manual acknowledgement only)."""
        if not self._manual_ack:
            return
        blob = b"".join([_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids])
        if blob:
            self._packet_queue(mqtt.PUBACK, blob, 0, 1)

    def reconnect(self) -> MQTTErrorCode:
        if self._rbuf is not None:
            self._rbuf.clear()  # never a byte of the last connection read as this one's
        return super().reconnect()

    def _packet_read(self) -> MQTTErrorCode:
        buf = self._rbuf
        if buf is None:
            buf = self._rbuf = bytearray()
        try:
            data = self._sock_recv(READ_SIZE)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as err:
            self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if not data:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        buf += data
        with self._msgtime_mutex:
            self._last_bytes_received = time.monotonic()
        pos, end = 0, len(buf)
        try:
            while pos < end:
                length, shift, i, whole = 0, 0, pos + 1, False
                while i < end:  # the remaining length: 1 to 4 bytes, 7 bits each
                    b = buf[i]
                    i += 1
                    length |= (b & 127) << shift
                    shift += 7
                    if not b & 128:
                        whole = True
                        break
                    if i - pos > 4:
                        return MQTTErrorCode.MQTT_ERR_PROTOCOL
                if not whole or end - i < length:
                    break  # the rest of this packet is still to come
                command = buf[pos]
                pos = i + length
                rc = self._handle(command, buf[i:pos])
                if rc:
                    return rc
        finally:
            del buf[:pos]
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle(self, command: int, body: bytearray) -> MQTTErrorCode:
        if command & 0xF0 == mqtt.PUBLISH and self.sink is not None and self._direct(command, body):
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        self._in_packet = {
            "command": command,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": len(body),
            "packet": body,
            "to_process": 0,
            "pos": 0,
        }
        try:
            return self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            return MQTTErrorCode.MQTT_ERR_PROTOCOL

    def _direct(self, command: int, body: bytearray) -> bool:
        """Hand a plain QoS 1 PUBLISH to the sink; False: paho's path takes it."""
        if (command & 0x06) != 0x02 or not self._manual_ack:
            return False
        if self._protocol != MQTTProtocolVersion.MQTTv5:
            return False
        end = 2 + ((body[0] << 8) | body[1]) if len(body) >= 2 else 0
        if end < 3 or end + 3 > len(body) or body[end + 2] != 0:
            return False  # too short, an empty topic (an alias), or properties: paho's path
        try:
            topic = body[2:end].decode()
        except UnicodeDecodeError:
            return False
        sink = self.sink
        assert sink is not None
        mid = body[end] << 8 | body[end + 1]
        self.direct += 1
        with self._in_callback_mutex:
            sink(topic, bytes(body[end + 3 :]), 1, bool(command & 0x01), mid)
        return True
