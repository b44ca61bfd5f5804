"""What an idle cluster costs: three broker processes on one machine with
1,000 replicated partitions (10 topics x 100, replication factor 3) that
saw one record each and then nothing.

usage: python perf/idle_cluster.py BROKER [--topics N] [--partitions N] [--idle S] [--keep]

- starts 3 brokers, creates the topics, waits until every partition has a
  leader, produces one record to each partition (so every Raft group has
  had traffic), waits for quiet (--settle S, default 10);
- measures each broker's CPU-seconds (utime + stime from /proc/PID/stat)
  over --idle S (default 10), with the busiest threads;
- reads `ringlog_raft_groups_awake` from each broker's /metrics.
Prints one JSON line."""
import json, os, subprocess, sys, time, urllib.request

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

broker = sys.argv[1]


def flag(name, default):
    return type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


topics = flag("--topics", 10)
partitions = flag("--partitions", 100)
idle_s = flag("--idle", 10.0)
settle_s = flag("--settle", 10.0)
NODES = 3
READY_TIMEOUT_S = 300
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


from local_cluster import LocalCluster

cluster = LocalCluster(broker, NODES, "idle-cluster-", metrics=True)
work, client_ports, metrics_ports, bootstrap, nodes = (
    cluster.work, cluster.client_ports, cluster.metrics_ports, cluster.bootstrap, cluster.nodes)
start = cluster.start
admin = AdminClient({"bootstrap.servers": bootstrap})


def wait_until(what, check):
    deadline = time.time() + READY_TIMEOUT_S
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.5)
    sys.exit(f"{what} did not happen within {READY_TIMEOUT_S} s; see {work}")


def all_led():
    md = admin.list_topics(timeout=10)
    led = 0
    for t in range(topics):
        topic = md.topics.get(f"idle{t}")
        if topic is None or topic.error is not None:
            return False
        led += sum(1 for p in topic.partitions.values() if p.leader in client_ports)
    return led == topics * partitions


def cpu_seconds(pid):
    """utime + stime of the process, and of each thread by name."""
    def ticks(path):
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            threads[f"{name}/{tid}"] = ticks(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            pass
    return ticks(f"/proc/{pid}/stat"), threads


def awake_groups(n):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_ports[n]}/metrics", timeout=5) as r:
            text = r.read().decode()
    except Exception:
        return None
    values = [float(line.split()[-1]) for line in text.splitlines()
              if line.startswith("ringlog_raft_groups_awake")]
    return sum(values) if values else None


for n in client_ports:
    start(n)
wait_until("3 brokers", lambda: len(admin.list_topics(timeout=2).brokers) == NODES)
for f in admin.create_topics([NewTopic(f"idle{t}", partitions, 3) for t in range(topics)]).values():
    f.result()
wait_until("a leader for every partition", all_led)

producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                     "message.timeout.ms": 120000})
failed = []
for t in range(topics):
    for p in range(partitions):
        producer.produce(f"idle{t}", b"x", partition=p,
                         on_delivery=lambda err, _m: err is not None and failed.append(str(err)))
    producer.poll(0)
left = producer.flush(120)
if left or failed:
    sys.exit(f"{left} records unsent, {len(failed)} failed ({failed[:1]}); see {work}")

time.sleep(settle_s)
before = {n: cpu_seconds(p.pid) for n, p in nodes.items()}
started = time.time()
time.sleep(idle_s)
after = {n: cpu_seconds(p.pid) for n, p in nodes.items()}
elapsed = time.time() - started

result = {"nodes": NODES, "partitions": topics * partitions, "replication_factor": 3,
          "idle_s": round(elapsed, 2), "cpu_s_per_broker": {}, "busiest_threads": {},
          "raft_groups_awake": {}}
for n in nodes:
    total = (after[n][0] - before[n][0]) / TICKS_PER_S
    result["cpu_s_per_broker"][n] = round(total, 3)
    threads = {k: (v - before[n][1].get(k, 0)) / TICKS_PER_S for k, v in after[n][1].items()}
    busiest = sorted(threads.items(), key=lambda kv: -kv[1])[:4]
    result["busiest_threads"][n] = {k: round(v, 3) for k, v in busiest if v > 0}
    result["raft_groups_awake"][n] = awake_groups(n)
result["cpu_s_total"] = round(sum(result["cpu_s_per_broker"].values()), 3)
result["load_average"] = os.getloadavg()[0]
print(json.dumps(result))
stop_all()
if "--keep" in sys.argv:
    print(f"logs and data: {work}", file=sys.stderr)
else:
    subprocess.run(["rm", "-rf", work])
