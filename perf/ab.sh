#!/usr/bin/env bash
# Before/after comparison of two broker builds, in one sitting, alternating
# runs so that noise on a shared machine falls on both alike.
#
#   perf/ab.sh BEFORE_BROKER AFTER_BROKER [ROUNDS]
#
# Each round runs, for each broker in turn, the shapes the broker's hot paths
# are judged by: produce 100 B and 1 KiB acks=1 (--rate max), the peer shape
# (100 B, batches of 1,000, 2 producers, 1 request in flight) and a catch-up
# read of 100 MB just written (from the batch cache). One generator
# (target/release/ringlog-perf) drives both. Prints each run and the
# after/before ratio of the medians.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BEFORE=${1:?before broker binary}
AFTER=${2:?after broker binary}
ROUNDS=${3:-3}
PERF=${PERF:-$ROOT/target/release/ringlog-perf}
BROKER_CPUS=${BROKER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
DURATION=${DURATION:-8}
ADDR=127.0.0.1:${PORT:-29393}
OUT=$(mktemp -d /tmp/ringlog-ab.XXXXXX)
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

start_broker() {
  "$1" serve --cpus "$BROKER_CPUS" --data-dir "$OUT/data" --listen "$ADDR" >"$OUT/broker.log" 2>&1 &
  BROKER_PID=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR#*:}") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "broker $1 did not start" >&2; cat "$OUT/broker.log" >&2; exit 1
}

# shape NAME: the generator's arguments for one shape.
shape() {
  case $1 in
    produce-100B) echo produce --topic p100 --partitions 4 --record-size 100 --batch-records 1000 --acks 1 --in-flight 8 --producers 2 --duration "$DURATION" --warmup 2 --rate max ;;
    produce-1KiB) echo produce --topic p1k --partitions 4 --record-size 1024 --batch-records 256 --acks 1 --in-flight 8 --producers 2 --duration "$DURATION" --warmup 2 --rate max ;;
    peer-100B) echo produce --topic peer --partitions 2 --record-size 100 --batch-records 1000 --acks 1 --in-flight 1 --producers 2 --duration "$DURATION" --warmup 2 --rate max ;;
    catchup-cache) echo consume --topic fill --from earliest --to-end --consumers 2 --duration 60 --fetch-partition-bytes 4194304 ;;
  esac
}

# measure BROKER NAME: one run; prints MB/s.
measure() {
  start_broker "$1"
  if [[ $2 == catchup-cache ]]; then
    "$PERF" produce --topic fill --partitions 4 --record-size 1024 --batch-records 256 --acks 1 --in-flight 8 \
      --producers 2 --records 100000 --duration 60 --rate max --bootstrap "$ADDR" --cpus "$LOAD_CPUS" --json >/dev/null
  fi
  # shellcheck disable=SC2046
  "$PERF" $(shape "$2") --bootstrap "$ADDR" --cpus "$LOAD_CPUS" --json 2>/dev/null | tail -1 | jq -r '.mb_per_sec'
  stop_broker
}

# median NAME SIDE: the median MB/s of that shape's runs on that side.
median() {
  awk -v n="$1" -v s="$2" '$1==n && $2==s {print $3}' "$OUT/runs.txt" | sort -n |
    awk '{a[NR]=$1} END {m=int((NR+1)/2); printf "%.0f", (NR%2 ? a[m] : (a[m]+a[m+1])/2)}'
}

SHAPES=${SHAPES:-"produce-100B produce-1KiB peer-100B catchup-cache"}
echo "before: $BEFORE"; echo "after:  $AFTER"; echo "rounds: $ROUNDS, $(nproc) CPUs, $(date -u +%FT%TZ)"
for round in $(seq 1 "$ROUNDS"); do
  for name in $SHAPES; do
    for side in before after; do
      bin=$BEFORE; [[ $side == after ]] && bin=$AFTER
      mbs=$(measure "$bin" "$name")
      echo "$name $side $mbs loadavg $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$OUT/runs.txt"
    done
  done
done
echo
echo "| shape | before MB/s (median) | after MB/s (median) | after/before |"
echo "|---|---|---|---|"
for name in $SHAPES; do
  b=$(median "$name" before)
  a=$(median "$name" after)
  echo "| $name | $b | $a | $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a/b}') |"
done
