#!/usr/bin/env bash
# read_committed against read_uncommitted: catch-up reads of one topic whose
# records were written in transactions, 1% of them aborted, in one sitting.
#
#   perf/txn-read.sh [ROUNDS]
#
# One broker (BROKER_CPUS, default 0); ringlog-perf (LOAD_CPUS, default 1)
# first writes RECORDS records of 100 B to PARTITIONS partitions as
# batches of BATCH records from a transactional producer, a transaction every
# TXN_BATCHES batches, every ABORT_EVERY-th one aborted (EndTxn: the
# broker's transaction coordinator writes the markers). Then each round reads the
# whole topic once per isolation level from the earliest offset to the end
# (after one uncounted read; the order alternating between rounds, so drift on a shared machine falls
# on both alike) and prints MB/s; at the end the per-round ratios
# (read_committed / read_uncommitted) and the ratio of the medians.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-5}
RINGLOG=${RINGLOG:-$ROOT/target/release/ringlog}
PERF=${PERF:-$ROOT/target/release/ringlog-perf}
BROKER_CPUS=${BROKER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
RECORDS=${RECORDS:-2000000}
PARTITIONS=${PARTITIONS:-2}
BATCH=${BATCH:-100}
TXN_BATCHES=${TXN_BATCHES:-10}
ABORT_EVERY=${ABORT_EVERY:-100}
ADDR=127.0.0.1:${PORT:-29411}
OUT=$(mktemp -d /tmp/ringlog-txn-read.XXXXXX)
BROKER_PID=

stop_broker() {
  if [[ -n $BROKER_PID ]]; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=
  fi
  rm -rf "$OUT/data"
}
trap stop_broker EXIT

"$RINGLOG" serve --cpus "$BROKER_CPUS" --data-dir "$OUT/data" --listen "$ADDR" --metrics-listen none >"$OUT/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR#*:}") 2>/dev/null; then break; fi
  sleep 0.1
done

echo "records $RECORDS x 100 B, $PARTITIONS partitions, batches of $BATCH, $TXN_BATCHES batches per transaction, 1 in $ABORT_EVERY aborted"
echo "$(nproc) CPUs, $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$PERF" produce --bootstrap "$ADDR" --topic txn --partitions "$PARTITIONS" --record-size 100 \
  --batch-records "$BATCH" --acks -1 --in-flight 5 --transactional-id txn-read --txn-records "$((TXN_BATCHES * BATCH))" \
  --abort-every "$ABORT_EVERY" --records "$RECORDS" --duration 600 --rate max --cpus "$LOAD_CPUS" --json |
  tail -1 | jq -r '"written: \(.records) records, \(.mb_per_sec | floor) MB/s, errors \(.errors)"'

read_once() {
  "$PERF" consume --bootstrap "$ADDR" --topic txn --no-create --from earliest --to-end \
    --isolation "$1" --fetch-partition-bytes 4194304 --duration 600 --cpus "$LOAD_CPUS" --json 2>/dev/null |
    tail -1 | jq -r '"\(.mb_per_sec) \(.records) \(.errors)"'
}

# One read first, not counted: the first pass over freshly written files warms the page cache.
read_once read-uncommitted >/dev/null
for round in $(seq 1 "$ROUNDS"); do
  order="read-uncommitted read-committed"
  (( round % 2 == 0 )) && order="read-committed read-uncommitted"
  for isolation in $order; do
    read -r mbs records errors <<<"$(read_once "$isolation")"
    echo "$round $isolation $mbs MB/s records $records errors $errors loadavg $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$OUT/runs.txt"
  done
done

echo
echo "| round | read_uncommitted MB/s | read_committed MB/s | ratio |"
echo "|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
  u=$(awk -v r="$round" '$1==r && $2=="read-uncommitted" {print $3}' "$OUT/runs.txt")
  c=$(awk -v r="$round" '$1==r && $2=="read-committed" {print $3}' "$OUT/runs.txt")
  echo "| $round | $(printf %.0f "$u") | $(printf %.0f "$c") | $(awk -v c="$c" -v u="$u" 'BEGIN {printf "%.2f", c/u}') |"
done
median() {
  awk -v s="$1" '$2==s {print $3}' "$OUT/runs.txt" | sort -n |
    awk '{a[NR]=$1} END {m=int((NR+1)/2); printf "%.1f", (NR%2 ? a[m] : (a[m]+a[m+1])/2)}'
}
u=$(median read-uncommitted)
c=$(median read-committed)
echo "medians: read_uncommitted $u MB/s, read_committed $c MB/s, ratio $(awk -v c="$c" -v u="$u" 'BEGIN {printf "%.2f", c/u}')"
kill -TERM "$BROKER_PID"; wait "$BROKER_PID" || true; BROKER_PID=
entries=$(find "$OUT/data" -name '*.txnindex' -printf '%s\n' | awk '{s += $1} END {print s / 34}')
transactions=$(( RECORDS / BATCH / TXN_BATCHES ))
echo "transactions: $transactions, each on every partition; .txnindex entries after a clean stop: $entries (expected $(( transactions / ABORT_EVERY * PARTITIONS )))"
