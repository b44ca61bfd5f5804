#!/usr/bin/env bash
# Produce latency with and without the log cleaner working on the same shard.
#
#   perf/cleaner-p99.sh target/release [ROUNDS]
#
# One broker on CPU 0 (one shard). Each round runs twice, alternating: a
# keyed background writer (kcat, ~10 MB/s, 1,000 keys, 1 KiB values) into a
# topic with 1 MiB segments, once with cleanup.policy=delete (no cleaning)
# and once with cleanup.policy=compact and min.cleanable.dirty.ratio=0.01
# (a cleaning about every 100 ms), while ringlog-perf e2e measures produce
# acknowledgement latency on another topic. Generator and writer on CPU 1.
set -u
bin=$(realpath "${1:-target/release}")
rounds=${2:-4}
port=${PORT:-29517}
boot=127.0.0.1:$port
dir=$(mktemp -d "${TMPDIR:-/tmp}/cleaner-p99.XXXX")
taskset -c 0 "$bin/ringlog" --cpus 0 --listen "$boot" --data-dir "$dir/data" \
    --metrics-listen none --log-cleaner-backoff-ms 100 >"$dir/broker.log" 2>&1 &
broker=$!
trap 'kill -TERM $broker 2>/dev/null; wait $broker; rm -rf "$dir"' EXIT
sleep 2
feed() {
    python3 -c '
import sys, time
value = "x" * 1000
start, n = time.time(), 0
while time.time() - start < 14:
    for _ in range(1000):
        sys.stdout.write("k%d:%s\n" % (n % 1000, value))
        n += 1
    sys.stdout.flush()
    time.sleep(max(0, start + n / 10000 - time.time()))
' | taskset -c 1 kcat -b "$boot" -P -K: -t "$1" -X linger.ms=5 2>/dev/null
}
for round in $(seq "$rounds"); do
    for side in delete compact; do
        topic=background-$side-$round
        configs=(-c segment.bytes=1048576)
        [ "$side" = compact ] && configs+=(-c cleanup.policy=compact -c min.cleanable.dirty.ratio=0.01)
        "$bin/ringlog" topic create "$topic" -p 1 --bootstrap "$boot" "${configs[@]}" >/dev/null
        feed "$topic" &
        writer=$!
        sleep 2
        ack=$(taskset -c 1 "$bin/ringlog-perf" e2e --bootstrap "$boot" --topic "e2e-$side-$round" \
            --partitions 4 --record-size 1024 --batch-records 256 --linger-ms 1 --acks 1 \
            --in-flight 8 --producers 2 --consumers 1 --duration 8 --warmup 2 --rate 50000 \
            --cpus 1 2>&1 | grep "ack latency")
        wait $writer
        echo "round $round $side: $ack | cleanings so far: $(grep -c 'cleaned partition log' "$dir/broker.log")"
    done
done
