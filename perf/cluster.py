"""What replication costs and how fast a cluster fails over, on one machine:
three broker processes sharing its cores, measured in one sitting.

usage: python perf/cluster.py BROKER PERF [--duration S] [--kills N]

BROKER is the ringlog binary, PERF the ringlog-perf binary.
- produce 100 B and 1 KiB, acks=all, to a topic of replication factor 3
  and, in the same run, to one of replication factor 1 (each run sent to
  the partition's leader);
- end-to-end latency p50/p99 on the RF=3 topic at half its 1 KiB maximum;
- fail-over: N times, SIGKILL the RF=3 partition's leader while a
  librdkafka producer (acks=all, idempotent) sends a record every 5 ms; the
  time from the kill to the next acknowledged record; the killed broker is
  restarted before the next kill.
Prints one JSON line."""
import json, os, statistics, subprocess, sys, threading, time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

broker, perf = sys.argv[1], sys.argv[2]


def flag(name, default):
    return type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


duration = flag("--duration", 8.0)
kills = flag("--kills", 20)
NODES = 3
READY_TIMEOUT_S = 60
# How long a fail-over may take before the run gives up on it.
FAILOVER_TIMEOUT_S = 60


from local_cluster import LocalCluster

cluster = LocalCluster(broker, NODES, "cluster-")
work, client_ports, bootstrap, nodes = (cluster.work, cluster.client_ports, cluster.bootstrap,
                                        cluster.nodes)
start = cluster.start
admin = AdminClient({"bootstrap.servers": bootstrap})


def wait_brokers(count):
    deadline = time.time() + READY_TIMEOUT_S
    while time.time() < deadline:
        try:
            if len(admin.list_topics(timeout=2).brokers) == count:
                return
        except Exception:
            pass
        time.sleep(0.2)
    sys.exit(f"the cluster did not show {count} brokers; see {work}")


def leader(topic):
    """(node id, address) of partition 0's leader."""
    deadline = time.time() + READY_TIMEOUT_S
    while time.time() < deadline:
        try:
            md = admin.list_topics(topic, timeout=2)
            node = md.topics[topic].partitions[0].leader
            if node in client_ports:
                return node, f"127.0.0.1:{client_ports[node]}"
        except Exception:
            pass
        time.sleep(0.2)
    sys.exit(f"no leader for {topic}; see {work}")


def run_perf(mode, topic, *extra):
    node, address = leader(topic)
    out = subprocess.run([perf, mode, "--bootstrap", address, "--topic", topic, "--no-create",
                          "--acks", "-1", "--duration", str(duration), "--json", *extra],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"ringlog-perf {mode} on {topic}: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


for n in client_ports:
    start(n)
wait_brokers(NODES)
for rf in (1, 3):
    futures = admin.create_topics([NewTopic(f"rf{rf}", 1, rf)])
    for f in futures.values():
        f.result()

result = {"nodes": NODES, "duration_s": duration}
for size, name in ((100, "100B"), (1024, "1KiB")):
    for rf in (1, 3):
        j = run_perf("produce", f"rf{rf}", "--record-size", str(size))
        result[f"produce_{name}_rf{rf}_records_per_sec"] = round(j["records_per_sec"])
        result[f"produce_{name}_rf{rf}_errors"] = j["errors"]
    result[f"produce_{name}_rf3_over_rf1"] = round(
        result[f"produce_{name}_rf3_records_per_sec"]
        / max(1, result[f"produce_{name}_rf1_records_per_sec"]), 3)
half = max(1, result["produce_1KiB_rf3_records_per_sec"] // 2)
j = run_perf("e2e", "rf3", "--record-size", "1024", "--rate", str(half))
result["e2e_1KiB_rf3_rate"] = half
result["e2e_1KiB_rf3_latency_us"] = {k: j["latency_us"][k] for k in ("p50", "p99", "max")}

# Fail-over: a producer that keeps sending; each kill's time to the next ack.
acked = []  # times of acknowledged records
acked_lock = threading.Lock()
stop = threading.Event()
producer_failed = []


def keep_producing():
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 0, "message.timeout.ms": 120000, "retry.backoff.ms": 20,
                  "retry.backoff.max.ms": 100, "topic.metadata.refresh.interval.ms": 1000})

    def delivered(err, _msg):
        if err is None:
            with acked_lock:
                acked.append(time.time())

    try:
        while not stop.is_set():
            p.produce("rf3", b"x" * 100, on_delivery=delivered)
            p.poll(0.005)
        p.flush(30)
    except Exception as error:  # a fatal producer error ends the run
        producer_failed.append(str(error))


producer = threading.Thread(target=keep_producing, daemon=True)
producer.start()
failovers_ms = []
def settled_leader(topic):
    """The leader once two looks a second apart agree: after a restart the
    preferred replica takes leadership back, and a kill of a broker that
    just stopped leading would measure nothing."""
    node, _ = leader(topic)
    while True:
        time.sleep(1.0)
        again, _ = leader(topic)
        if again == node:
            return node
        node = again


for k in range(kills):
    node = settled_leader("rf3")
    killed_at = time.time()
    nodes[node].kill()
    nodes[node].wait()
    deadline = killed_at + FAILOVER_TIMEOUT_S
    served = None
    while served is None and time.time() < deadline and not producer_failed:
        time.sleep(0.005)
        with acked_lock:
            served = min((t for t in acked if t > killed_at), default=None)
    if producer_failed:
        sys.exit(f"kill {k + 1}: the producer failed: {producer_failed[0]}; see {work}")
    if served is None:
        sys.exit(f"kill {k + 1}: no record acknowledged within {FAILOVER_TIMEOUT_S} s; see {work}")
    failovers_ms.append((served - killed_at) * 1000)
    start(node)
    wait_brokers(NODES)
stop.set()
producer.join()
if failovers_ms:
    result["failover_kills"] = len(failovers_ms)
    result["failover_ms_p50"] = round(statistics.median(failovers_ms))
    result["failover_ms_max"] = round(max(failovers_ms))
    result["failover_ms"] = [round(f) for f in failovers_ms]
result["load_average"] = os.getloadavg()[0]
print(json.dumps(result))
stop_all()
subprocess.run(["rm", "-rf", work])
