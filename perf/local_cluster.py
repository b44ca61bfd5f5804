"""Broker processes on loopback for the perf scripts: free ports, a cluster
of N nodes with the KRaft-style flags, each node's log in the work
directory, and every process killed when the script exits."""
import atexit, os, socket, subprocess, tempfile


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class LocalCluster:
    """`count` brokers of `broker` (node ids 1..count) on ports of their own;
    with `metrics`, each serves /metrics on a port of its own too."""

    def __init__(self, broker, count, prefix, metrics=False):
        self.broker = broker
        self.work = tempfile.mkdtemp(prefix=prefix)
        ids = range(1, count + 1)
        self.client_ports = {n: free_port() for n in ids}
        self.cluster_ports = {n: free_port() for n in ids}
        self.metrics_ports = {n: free_port() for n in ids} if metrics else {}
        self.voters = ",".join(f"{n}@127.0.0.1:{p}" for n, p in self.cluster_ports.items())
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.client_ports.values())
        self.nodes = {}
        atexit.register(self.stop_all)

    def start(self, n):
        log = open(os.path.join(self.work, f"node-{n}.log"), "ab")
        metrics = f"127.0.0.1:{self.metrics_ports[n]}" if self.metrics_ports else "none"
        self.nodes[n] = subprocess.Popen(
            [self.broker, "serve", "--node-id", str(n),
             "--controller-quorum-voters", self.voters,
             "--cluster-listen", f"127.0.0.1:{self.cluster_ports[n]}",
             "--listen", f"127.0.0.1:{self.client_ports[n]}",
             "--data-dir", os.path.join(self.work, f"node-{n}"),
             "--metrics-listen", metrics],
            stdout=log, stderr=log)

    def stop_all(self):
        for p in self.nodes.values():
            if p.poll() is None:
                p.kill()
