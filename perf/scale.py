"""What partitions cost one broker: create time, RSS, open files, Metadata
latency, idle CPU, clean and crash restart times, and (optionally) the peer
shape on the same broker against one with 4 partitions.

usage: python perf/scale.py BROKER PERF PARTITIONS [--peer ROUNDS] [--metadata-only]

BROKER is the ringlog binary, PERF the ringlog-perf binary. One shard
(--cpus 0); topics of at most 10,000 partitions, one CreateTopics each;
one 100 B record to every 100th partition. Metadata for every topic is
timed (and the broker's CPU time for the answers) after the topics are made, and again after one more topic of one
partition, after one more of 10,000 and after both are deleted (the first
answer after a change of the topic table encodes what changed). --metadata-only stops there.
Prints one JSON line."""
import atexit, json, os, signal, socket, subprocess, sys, tempfile, time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

broker, perf, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
peer_rounds = int(sys.argv[sys.argv.index("--peer") + 1]) if "--peer" in sys.argv else 0
metadata_only = "--metadata-only" in sys.argv
TOPIC_PARTITIONS_MAX = 10_000


from local_cluster import free_port


port = free_port()
bootstrap = f"127.0.0.1:{port}"
work = tempfile.mkdtemp(prefix="scale-")
log = open(os.path.join(work, "broker.log"), "ab")


def start(data):
    """Starts the broker; returns it and the seconds until the port accepts."""
    t0 = time.time()
    p = subprocess.Popen([broker, "serve", "--cpus", "0", "--data-dir", data,
                          "--listen", bootstrap, "--metrics-listen", "none"],
                         stdout=log, stderr=log)
    # A failed run leaves no broker behind.
    atexit.register(lambda: p.poll() is None and p.kill())
    while True:
        if p.poll() is not None:
            sys.exit(f"broker exited {p.returncode}; see {work}/broker.log")
        if answers_api_versions():
            return p, time.time() - t0
        time.sleep(0.01)


# ApiVersions v0, correlation id 1, client id "s": answered only by a broker
# that serves (a killed one's socket may still accept for a moment).
API_VERSIONS_V0 = bytes.fromhex("0000000b" "0012" "0000" "00000001" "0001" "73")


def answers_api_versions():
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2) as s:
            s.settimeout(0.5)
            s.sendall(API_VERSIONS_V0)
            return len(s.recv(4)) == 4
    except OSError:
        return False


def stop(p):
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    p.wait()
    return time.time() - t0


def rss_mb(p):
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith("VmRSS"):
            return round(int(line.split()[1]) / 1024, 1)


def fds(p):
    return len(os.listdir(f"/proc/{p.pid}/fd"))


def ticks(p):
    f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def cpu_ms(p):
    """CPU time of all the broker's threads (schedstat, ns), in ms: what an
    answer costs the broker, apart from waiting for a CPU on a busy machine."""
    total = 0
    for tid in os.listdir(f"/proc/{p.pid}/task"):
        try:
            total += int(open(f"/proc/{p.pid}/task/{tid}/schedstat").read().split()[0])
        except OSError:
            pass
    return total / 1e6


def perf_json(*args):
    out = subprocess.run([perf, *args, "--bootstrap", bootstrap], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def produce_sample(topics, value):
    prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for name, partitions in topics:
        for part in range(0, partitions, 100):
            prod.produce(name, value=value, partition=part)
            prod.poll(0)
    assert prod.flush(120) == 0


def first_use_ms(topics):
    """Time for librdkafka to read the watermarks of every written partition."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "scale"})
    t0 = time.time()
    for name, partitions in topics:
        for part in range(0, partitions, 100):
            c.get_watermark_offsets(TopicPartition(name, part), timeout=60)
    elapsed = (time.time() - t0) * 1000
    c.close()
    return round(elapsed, 1)


def peer(data_tag, rounds_out):
    out = perf_json("produce", "--topic", "peer", "--partitions", "2", "--record-size", "100",
                    "--batch-records", "1000", "--acks", "1", "--in-flight", "1",
                    "--producers", "2", "--duration", "10", "--warmup", "2", "--rate", "max",
                    "--cpus", "1", "--json")
    rounds_out.setdefault(data_tag, []).append(out.get("mb_per_sec") or out.get("produced_mb_per_sec"))
    # Each round writes about a GB: the next one makes the topic again.
    for _, fut in admin.delete_topics(["peer"], operation_timeout=60).items():
        fut.result()


data = os.path.join(work, "data")
p, _ = start(data)
admin = AdminClient({"bootstrap.servers": bootstrap})
topics = []
left = total
while left > 0:
    n = min(left, TOPIC_PARTITIONS_MAX)
    topics.append((f"scale-{len(topics)}", n))
    left -= n
t0 = time.time()
for name, n in topics:
    for _, fut in admin.create_topics([NewTopic(name, n, 1)], request_timeout=600,
                                      operation_timeout=600).items():
        fut.result()
row = {"partitions": total, "create_s": round(time.time() - t0, 1)}
produce_sample(topics, b"x" * 100)


def finish(p):
    """Stops the broker, prints the row and removes the data."""
    stop(p)
    row["uptime"] = open("/proc/loadavg").read().split()[:3]
    print(json.dumps(row), flush=True)
    subprocess.run(["rm", "-rf", work])
    sys.exit(0)


def time_metadata(key, partitions):
    cpu = cpu_ms(p)
    md = perf_json("metadata")
    # The first answer describes and encodes; the other six are cached.
    row[f"{key}_broker_cpu_ms_7_answers"] = round(cpu_ms(p) - cpu, 1)
    assert md["partitions"] == partitions, md
    row[f"{key}_ms_first"] = round(md["answer_ms_first"], 2)
    row[f"{key}_ms_min"] = round(md["answer_ms_min"], 2)
    row[f"{key}_ms_median"] = round(md["answer_ms_median"], 2)
    return md


md = time_metadata("metadata", total)
row["metadata_bytes"] = md["response_bytes"]
row["metadata_ms_max"] = round(md["answer_ms_max"], 2)
row["metadata_decode_ms_median"] = round(md["decode_ms_median"], 2)
# The table changes: one more topic of 1 partition, then one of 10,000.
changed = total
for name, n in (("changed-small", 1), ("changed-large", TOPIC_PARTITIONS_MAX)):
    for _, fut in admin.create_topics([NewTopic(name, n, 1)], request_timeout=600,
                                      operation_timeout=600).items():
        fut.result()
    changed += n
    time_metadata(f"metadata_after_{name.split('-')[1]}_topic", changed)
# And back: both deleted.
for _, fut in admin.delete_topics(["changed-small", "changed-large"],
                                  request_timeout=600, operation_timeout=600).items():
    fut.result()
time_metadata("metadata_after_delete", total)
if metadata_only:
    finish(p)
t = time.time()
listed = admin.list_topics(timeout=60)
row["metadata_librdkafka_ms"] = round((time.time() - t) * 1000, 1)
assert sum(len(t.partitions) for n, t in listed.topics.items() if n.startswith("scale-")) == total
time.sleep(2)
c0 = ticks(p)
time.sleep(10)
row["idle_cpu_ticks_10s"] = ticks(p) - c0
row["rss_mb"] = rss_mb(p)
row["open_files"] = fds(p)
row["clean_stop_s"] = round(stop(p), 1)
p, row["clean_restart_s"] = start(data)
row["clean_restart_s"] = round(row["clean_restart_s"], 3)
row["rss_mb_after_restart"] = rss_mb(p)
row["open_files_after_restart"] = fds(p)
row["first_use_after_clean_ms"] = first_use_ms(topics)
# Written just before the kill: every 100th partition again.
produce_sample(topics, b"y" * 100)
p.send_signal(signal.SIGKILL)
p.wait()
p, row["crash_restart_s"] = start(data)
row["crash_restart_s"] = round(row["crash_restart_s"], 3)
row["first_use_after_crash_ms"] = first_use_ms(topics)
if peer_rounds:
    small = os.path.join(work, "small")
    rounds = {}
    for _ in range(peer_rounds):
        peer("with_partitions", rounds)
        stop(p)
        p, _ = start(small)
        if not os.path.exists(os.path.join(small, "other-0")):
            for _, fut in admin.create_topics([NewTopic("other", 2, 1)]).items():
                fut.result()
        peer("with_4", rounds)
        stop(p)
        p, _ = start(data)
    row["peer_mb_s"] = rounds
finish(p)
