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
# after/before ratio of the medians, of throughput and of the bytes moved per
# second of broker CPU (user + system, warm-up included), which a machine
# shared with other work disturbs less than throughput.
#
# BROKER_ARGS are added to both brokers' flags. PORT (29393) is the Kafka
# port; brokers bind it with SO_REUSEPORT, so two sittings on one machine
# need different ports.
#
# SCRAPE_SIDE=before|after scrapes that side's broker's /metrics (at
# METRICS, default 127.0.0.1:9644) every SCRAPE_INTERVAL seconds (0.1)
# during its runs, from LOAD_CPUS; with the same binary on both sides,
#   SHAPES=peer-100B SCRAPE_SIDE=after perf/ab.sh B B 5
# is the cost of scraping, measured in one sitting.
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
SCRAPE_SIDE=${SCRAPE_SIDE:-}
SCRAPE_INTERVAL=${SCRAPE_INTERVAL:-0.1}
METRICS=${METRICS:-127.0.0.1:9644}
OUT=$(mktemp -d /tmp/ringlog-ab.XXXXXX)
BROKER_PID=
SCRAPER_PID=

# Scrapes until stopped, as Prometheus does: one process, one kept-alive
# connection, a request every SCRAPE_INTERVAL seconds; each answer's HTTP
# status goes to scrapes.txt.
start_scraper() {
  local rate
  rate=$(awk -v s="$SCRAPE_INTERVAL" 'BEGIN {printf "%d/m", 60 / s}')
  taskset -c "$LOAD_CPUS" curl -s --rate "$rate" -w '%{stderr}%{http_code}\n' \
    "http://$METRICS/metrics?[1-1000000]" >/dev/null 2>>"$OUT/scrapes.txt" &
  SCRAPER_PID=$!
}

stop_scraper() {
  if [[ -n $SCRAPER_PID ]]; then
    kill "$SCRAPER_PID" 2>/dev/null || true
    wait "$SCRAPER_PID" 2>/dev/null || true
    SCRAPER_PID=
  fi
}

stop_broker() {
  stop_scraper
  if [[ -n $BROKER_PID ]]; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=
  fi
  rm -rf "$OUT/data"
}
trap stop_broker EXIT

start_broker() {
  # shellcheck disable=SC2086
  "$1" serve --cpus "$BROKER_CPUS" --data-dir "$OUT/data" --listen "$ADDR" ${BROKER_ARGS:-} >"$OUT/broker.log" 2>&1 &
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

# broker_cpu_ticks: the broker's user + system time so far, in clock ticks.
broker_cpu_ticks() {
  awk '{print $14 + $15}' "/proc/$BROKER_PID/stat"
}

# measure BROKER NAME SIDE: one run; prints MB/s and MB per broker CPU-second.
measure() {
  start_broker "$1"
  if [[ $3 == "$SCRAPE_SIDE" ]]; then start_scraper; fi
  if [[ $2 == catchup-cache ]]; then
    "$PERF" produce --topic fill --partitions 4 --record-size 1024 --batch-records 256 --acks 1 --in-flight 8 \
      --producers 2 --records 100000 --duration 60 --rate max --bootstrap "$ADDR" --cpus "$LOAD_CPUS" --json >/dev/null
  fi
  local ticks_before ticks_after
  ticks_before=$(broker_cpu_ticks)
  # shellcheck disable=SC2046
  "$PERF" $(shape "$2") --bootstrap "$ADDR" --cpus "$LOAD_CPUS" --json 2>/dev/null | tail -1 >"$OUT/run.json"
  ticks_after=$(broker_cpu_ticks)
  jq -r --arg ticks "$((ticks_after - ticks_before))" --arg hz "$(getconf CLK_TCK)" \
    '"\(.mb_per_sec) \(.bytes / 1e6 / (($ticks | tonumber) / ($hz | tonumber)))"' "$OUT/run.json"
  stop_broker
}

# median NAME SIDE [COLUMN]: the median of that shape's runs on that side
# (column 3: MB/s; 5: MB per broker CPU-second).
median() {
  awk -v n="$1" -v s="$2" -v c="${3:-3}" '$1==n && $2==s {print $c}' "$OUT/runs.txt" | sort -n |
    awk '{a[NR]=$1} END {m=int((NR+1)/2); printf "%.0f", (NR%2 ? a[m] : (a[m]+a[m+1])/2)}'
}

SHAPES=${SHAPES:-"produce-100B produce-1KiB peer-100B catchup-cache"}
echo "before: $BEFORE"; echo "after:  $AFTER"; echo "rounds: $ROUNDS, $(nproc) CPUs, $(date -u +%FT%TZ)"
for round in $(seq 1 "$ROUNDS"); do
  for name in $SHAPES; do
    for side in before after; do
      bin=$BEFORE; [[ $side == after ]] && bin=$AFTER
      # $(...) waits for the run's broker to be gone before the next starts.
      run=$(measure "$bin" "$name" "$side")
      read -r mbs efficiency <<<"$run"
      echo "$name $side $mbs MB/cpu-s $efficiency loadavg $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$OUT/runs.txt"
    done
  done
done
echo
if [[ -n $SCRAPE_SIDE ]]; then
  echo "scrapes of the $SCRAPE_SIDE side: $(grep -c '^200$' "$OUT/scrapes.txt" || true) answered 200, $(grep -vc '^200$' "$OUT/scrapes.txt" || true) did not"
fi
echo "| shape | before MB/s (median) | after MB/s (median) | after/before | before MB per CPU-s | after MB per CPU-s | after/before |"
echo "|---|---|---|---|---|---|---|"
for name in $SHAPES; do
  b=$(median "$name" before)
  a=$(median "$name" after)
  be=$(median "$name" before 5)
  ae=$(median "$name" after 5)
  echo "| $name | $b | $a | $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a/b}') | $be | $ae | $(awk -v a="$ae" -v b="$be" 'BEGIN {printf "%.2f", a/b}') |"
done
