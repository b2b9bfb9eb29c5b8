"""kazoo over TLS against session-servers' ZooKeeper listeners (`cargo xtask compat`).

Run by the xtask against servers started with --tls-cert, --tls-key and
--tls-client-ca (client certificates required):

    python kazoo_tls.py --hosts H:P,H:P --ca ca.pem --cert client.pem --key client.key

Each step prints one line, ``ok STEP`` or ``FAIL STEP: why``, which the
xtask reads as one test each; the script exits non-zero after the first
failure (later steps depend on the earlier ones). Steps:

  connect          kazoo with use_ssl=True, verify_certs=True and
                   check_hostname=True opens a session
  create           creates a node and reads it back
  watch            a data watch fires when the node's data changes
  ephemeral        creates an ephemeral node; a second TLS client sees it
  close            closes the first session; the second client's exists
                   watch fires and the ephemeral is gone
  plaintext        kazoo with use_ssl=False on the TLS port gets no session
  plaintext-closed a plaintext ConnectRequest on the TLS port is answered
                   with nothing but the connection's close
  no-client-cert   kazoo over TLS without a client certificate gets no
                   session (the servers require one)
"""

import argparse
import logging
import socket
import struct
import sys
import threading
import time

from kazoo.client import KazooClient
from kazoo.protocol.states import EventType

ROOT = "/xtask-kazoo-tls"
# Generous: the servers may still be electing a leader when this starts.
FIRST_CONNECT_S = 60
REFUSED_WITHIN_S = 5
WAIT_S = 10


class StepFailed(Exception):
    """A step's check did not hold; the message says which and with what."""


def client(args, **overrides):
    settings = dict(
        hosts=args.hosts,
        use_ssl=True,
        verify_certs=True,
        check_hostname=True,
        ca=args.ca,
        certfile=args.cert,
        keyfile=args.key,
        timeout=10.0,
    )
    settings.update(overrides)
    return KazooClient(**settings)


def refused(zk, what):
    """Checks that `zk` gets no session within REFUSED_WITHIN_S."""
    try:
        zk.start(timeout=REFUSED_WITHIN_S)
        session = zk.client_id[0]
    except Exception as err:  # kazoo's timeout, or an ssl error
        return "no session within %d s (%s)" % (REFUSED_WITHIN_S, type(err).__name__)
    finally:
        zk.stop()
        zk.close()
    raise StepFailed("%s got a session (0x%x)" % (what, session))


def wait_for(event, what):
    if not event.wait(WAIT_S):
        raise StepFailed("%s did not happen within %d s" % (what, WAIT_S))


def plaintext_closed(host, port):
    """Sends ZooKeeper's ConnectRequest in plain text; only a close may answer."""
    request = struct.pack(">iqiq", 0, 0, 10000, 0) + struct.pack(">i", 16)
    request += b"\0" * 16 + b"\0"
    started = time.monotonic()
    with socket.create_connection((host, port), REFUSED_WITHIN_S) as conn:
        conn.settimeout(REFUSED_WITHIN_S)
        conn.sendall(struct.pack(">i", len(request)) + request)
        received = b""
        try:
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                received += chunk
        except ConnectionResetError:
            pass
        except socket.timeout:
            raise StepFailed(
                "the connection was still open %d s after a plaintext ConnectRequest"
                % REFUSED_WITHIN_S
            )
    elapsed_ms = (time.monotonic() - started) * 1000
    # A TLS alert (record type 21) may come first; a ConnectResponse may not.
    if received and received[0] != 21:
        raise StepFailed(
            "the server answered a plaintext ConnectRequest with %d bytes: %r"
            % (len(received), received[:16])
        )
    return "closed after %.0f ms (%d bytes before the close)" % (
        elapsed_ms,
        len(received),
    )


def run(args, step):
    first = client(args)
    second = None
    try:
        with step("connect"):
            first.start(timeout=FIRST_CONNECT_S)
            step.detail("session 0x%x" % first.client_id[0])

        with step("create"):
            if first.exists(ROOT):
                first.delete(ROOT, recursive=True)
            first.create(ROOT, b"one")
            data, _ = first.get(ROOT)
            if data != b"one":
                raise StepFailed("read back %r, expected b'one'" % data)

        with step("watch"):
            fired = threading.Event()
            seen = []

            def on_change(event):
                seen.append(event)
                fired.set()

            first.get(ROOT, watch=on_change)
            first.set(ROOT, b"two")
            wait_for(fired, "the data watch")
            if seen[0].type != EventType.CHANGED or seen[0].path != ROOT:
                raise StepFailed("the watch saw %r, expected CHANGED on %s" % (seen[0], ROOT))
            step.detail("CHANGED on %s" % ROOT)

        ephemeral = ROOT + "/ephemeral"
        with step("ephemeral"):
            first.create(ephemeral, b"mine", ephemeral=True)
            second = client(args)
            second.start(timeout=FIRST_CONNECT_S)
            stat = None
            deadline = time.monotonic() + WAIT_S
            while stat is None and time.monotonic() < deadline:
                stat = second.exists(ephemeral)
                if stat is None:
                    time.sleep(0.1)
            if stat is None:
                raise StepFailed("the second client does not see %s" % ephemeral)
            if stat.ephemeralOwner != first.client_id[0]:
                raise StepFailed(
                    "%s is owned by 0x%x, not by the first session 0x%x"
                    % (ephemeral, stat.ephemeralOwner, first.client_id[0])
                )

        with step("close"):
            gone = threading.Event()
            second.exists(ephemeral, watch=lambda event: gone.set())
            first.stop()
            first.close()
            wait_for(gone, "the second client's watch on the ephemeral")
            if second.exists(ephemeral) is not None:
                raise StepFailed("%s is still there after its session closed" % ephemeral)
            step.detail("the ephemeral went with its session")

        with step("plaintext"):
            step.detail(refused(client(args, use_ssl=False), "kazoo in plain text"))

        with step("plaintext-closed"):
            host, port = args.hosts.split(",")[0].rsplit(":", 1)
            step.detail(plaintext_closed(host, int(port)))

        with step("no-client-cert"):
            step.detail(
                refused(
                    client(args, certfile=None, keyfile=None),
                    "kazoo over TLS without a client certificate",
                )
            )
    finally:
        for zk in (first, second):
            if zk is not None:
                try:
                    if zk.connected and zk is second:
                        zk.delete(ROOT, recursive=True)
                    zk.stop()
                    zk.close()
                except Exception:
                    pass


class Steps:
    """Prints ``ok STEP [detail]`` or ``FAIL STEP: why`` for each step."""

    def __init__(self):
        self.name = None
        self.details = []

    def __call__(self, name):
        self.name = name
        self.details = []
        return self

    def detail(self, text):
        self.details.append(text)

    def __enter__(self):
        return self

    def __exit__(self, kind, err, _trace):
        if err is None:
            detail = "; ".join(self.details)
            print(("ok %s  %s" % (self.name, detail)).rstrip(), flush=True)
            return False
        if isinstance(err, StepFailed):
            why = str(err)
        else:
            why = "%s: %s" % (kind.__name__, err)
        print("FAIL %s: %s" % (self.name, why.splitlines()[0] if why else kind.__name__), flush=True)
        raise SystemExit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", required=True, help="host:port,... (ZooKeeper TLS listeners)")
    parser.add_argument("--ca", required=True, help="the CA the servers' certificates chain to")
    parser.add_argument("--cert", required=True, help="a client certificate the servers accept")
    parser.add_argument("--key", required=True, help="its private key")
    args = parser.parse_args()
    # kazoo logs every connection attempt; the refused ones are expected here.
    logging.basicConfig(level=logging.CRITICAL)
    run(args, Steps())
    return 0


if __name__ == "__main__":
    sys.exit(main())
