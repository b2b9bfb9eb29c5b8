"""pytest plugin: kazoo's test harness on session-servers run by `cargo xtask compat`.

kazoo's harness (kazoo/testing/harness.py) gets its cluster from
``get_global_cluster()``, which builds a
``kazoo.testing.common.ZookeeperCluster``: Java ZooKeeper servers
(``ManagedZooKeeper``) started from ZOOKEEPER_PATH, plus TLS material made
with pyOpenSSL and pyjks. Loaded with ``-p session_server_cluster``, this
plugin puts a module of its own under the name ``kazoo.testing.common``
before the harness imports it, so the harness builds a ``SessionCluster``
instead: its members report the session-servers' ZooKeeper addresses, and
starting, stopping or resetting a member asks the xtask, which owns the
server processes, to do it. The installed kazoo files are left as they are.

The xtask sets, for the pytest process:
  SESSION_COMPAT_CONTROL   host:port of its control listener (loopback)
  SESSION_COMPAT_SERVERS   the ZooKeeper address of each member, in order

The control protocol is one line per connection: the command (``start N``,
``stop N``, ``wipe N``, ``running N``, ``ready``; N counts from 1), answered
with ``ok [value]`` or ``error REASON``.
"""

import os
import socket
import sys
import types

CONTROL = os.environ["SESSION_COMPAT_CONTROL"]
ADDRESSES = os.environ["SESSION_COMPAT_SERVERS"].split(",")

# get_global_cluster() parses ZOOKEEPER_VERSION and refuses to run without
# it (or ZOOKEEPER_PATH); the value only chooses Java settings we ignore.
os.environ.setdefault("ZOOKEEPER_VERSION", "3.9.0")
os.environ["ZOOKEEPER_CLUSTER_SIZE"] = str(len(ADDRESSES))

# Starting a fresh cluster and waiting for its leader can take a while on a
# loaded machine; the xtask bounds each command itself (a minute a step).
CONTROL_TIMEOUT_S = 300


def control(command):
    """Sends one command to the xtask; returns the value after ``ok``."""
    host, port = CONTROL.rsplit(":", 1)
    with socket.create_connection((host, int(port)), CONTROL_TIMEOUT_S) as conn:
        conn.sendall(command.encode() + b"\n")
        answer = conn.makefile(encoding="utf-8").readline().strip()
    if answer != "ok" and not answer.startswith("ok "):
        raise RuntimeError(
            "xtask compat: `%s` failed: %s" % (command, answer or "no answer")
        )
    return answer[3:]


class SessionServer:
    """One member, with the part of ManagedZooKeeper's interface tests use."""

    def __init__(self, number, address):
        self.number = number  # 1-based, as the xtask counts
        self.host, port = address.rsplit(":", 1)
        self.client_port = int(port)

    @property
    def address(self):
        return "%s:%s" % (self.host, self.client_port)

    @property
    def secure_address(self):
        raise NotImplementedError(
            "these session-servers' ZooKeeper listeners are plain text (a server "
            "has one, TLS or not); `cargo xtask compat` checks TLS in its TLS run"
        )

    @property
    def running(self):
        # Asked each time: a server that died on its own reads as stopped,
        # so the harness's next setup starts it again.
        return control("running %d" % self.number) == "yes"

    def run(self):
        """Starts the server (keeping its data); returns once it listens."""
        control("start %d" % self.number)

    def stop(self):
        """Stops the server with SIGTERM, keeping its data directory."""
        control("stop %d" % self.number)

    def reset(self):
        """Stops the server and empties its data directory."""
        control("wipe %d" % self.number)

    destroy = reset

    def get_logs(self, num_lines=100):
        # kazoo's conftest logs these after every failing test; the xtask
        # prints where the servers' logs are instead, keeping reports short.
        return []


class SessionCluster:
    """Stands in for ZookeeperCluster; the Java settings it is given are ignored."""

    def __init__(self, **_java_settings):
        self._servers = [
            SessionServer(number, address)
            for number, address in enumerate(ADDRESSES, 1)
        ]

    def __getitem__(self, index):
        return self._servers[index]

    def __iter__(self):
        return iter(self._servers)

    def start(self):
        """Starts every stopped member, then waits until each takes sessions."""
        for server in reversed(self._servers):
            server.run()
        control("ready")

    def stop(self):
        for server in self._servers:
            server.stop()

    def terminate(self):
        # kazoo terminates the cluster after every test class
        # (KazooTestCase.tearDownClass), wiping the data as
        # ManagedZooKeeper.destroy does: each class gets a fresh cluster.
        for server in self._servers:
            server.destroy()

    def reset(self):
        for server in self._servers:
            server.reset()

    def get_logs(self):
        return []

    def get_ssl_client_configuration(self):
        raise NotImplementedError(
            "these session-servers' ZooKeeper listeners are plain text (a server "
            "has one, TLS or not); `cargo xtask compat` checks TLS in its TLS run"
        )


if "kazoo.testing.harness" in sys.modules:
    raise RuntimeError("load session_server_cluster before kazoo.testing")
common = types.ModuleType("kazoo.testing.common")
common.__doc__ = __doc__
common.ZookeeperCluster = SessionCluster
sys.modules["kazoo.testing.common"] = common
