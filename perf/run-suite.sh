#!/usr/bin/env bash
# Measures this machine's limits (loopback TCP, O_DIRECT writes, fdatasync
# latency), then ringlog against them. Raw outputs go to $OUT_DIR; a summary
# table with ratios to the limits is printed at the end and written to
# $OUT_DIR/summary.md.
#
# Needs: iperf3, fio, jq (apt-get install -y iperf3 fio jq).
# Knobs (environment): BROKER_CPUS (0), LOAD_CPUS (1), DURATION (10 s per run),
# E2E_RATE (default: half the measured 1 KiB acks=1 maximum),
# DATA_ROOT (a directory on the disk under test; default a new dir in /tmp),
# STALL_MBS (200: the write rate of the CPU-stall probe),
# PORT (29392), ONLY="limits ceiling produce e2e catchup shards idle peer" to run a
# subset (without "limits", ratios use LOOPBACK_MBS and ODIRECT_MBS if set).
# ONLY=peer-idempotent (not in the default set) runs the peer shape plain and
# with --idempotent in ROUNDS (3) alternating pairs, a fresh broker each run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BROKER_CPUS=${BROKER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
DURATION=${DURATION:-10}
PORT=${PORT:-29392}
ONLY=${ONLY:-"limits ceiling produce e2e catchup shards idle peer"}
OUT_DIR=${OUT_DIR:-$ROOT/perf/results/$(date -u +%Y%m%dT%H%M%SZ)}
if [[ -z ${DATA_ROOT:-} ]]; then
  DATA_ROOT=$(mktemp -d /tmp/ringlog-suite.XXXXXX)
  REMOVE_DATA_ROOT=1
fi
BROKER=$ROOT/target/release/ringlog
PERF=$ROOT/target/release/ringlog-perf
ADDR=127.0.0.1:$PORT
BROKER_PID=

mkdir -p "$OUT_DIR" "$DATA_ROOT"
SUMMARY=$OUT_DIR/summary.md
: >"$SUMMARY"

log() { echo "== $*" >&2; }
want() { [[ " $ONLY " == *" $1 "* ]]; }
row() { echo "$*" | tee -a "$SUMMARY"; }

start_broker() { # $1 = cpus, $2 = data dir (removed again by stop_broker unless KEEP_DATA=1)
  mkdir -p "$2"
  BROKER_DATA=$2
  "$BROKER" serve --cpus "$1" --data-dir "$2" --listen "$ADDR" >"$OUT_DIR/broker.log" 2>&1 &
  BROKER_PID=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
      echo "broker exited; log:" >&2; cat "$OUT_DIR/broker.log" >&2; return 1
    fi
    sleep 0.1
  done
  echo "broker did not listen on $ADDR" >&2
  return 1
}

stop_broker() {
  if [[ -n ${BROKER_PID:-} ]]; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=
  fi
  # Runs at 1 GB/s fill a disk fast: keep only what the next step reads.
  if [[ ${KEEP_DATA:-0} != 1 && -n ${BROKER_DATA:-} ]]; then rm -rf "$BROKER_DATA"; fi
  BROKER_DATA=
}

cleanup() {
  stop_broker
  [[ -n ${IPERF_PID:-} ]] && kill "$IPERF_PID" 2>/dev/null || true
  if [[ ${REMOVE_DATA_ROOT:-0} == 1 ]]; then rm -rf "$DATA_ROOT"; fi
}
trap cleanup EXIT

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "uname -r: $(uname -r)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
  echo "memory: $(free -g | awk '/Mem:/ {print $2 " GiB"}')"
  echo "data: $DATA_ROOT on $(df --output=source,fstype "$DATA_ROOT" | tail -1 | xargs)"
  echo "memlock: $(ulimit -l) KiB"
  echo "broker cpus: $BROKER_CPUS; load cpus: $LOAD_CPUS; run duration: ${DURATION}s"
} | tee "$OUT_DIR/machine.txt"

# ---------------------------------------------------------------- limits
LOOPBACK_MBS=${LOOPBACK_MBS:-}; ODIRECT_MBS=${ODIRECT_MBS:-}
if want limits; then
  log "loopback TCP bandwidth (iperf3, server on cpu $BROKER_CPUS, client on cpu $LOAD_CPUS)"
  taskset -c "$BROKER_CPUS" iperf3 -s -1 -B 127.0.0.1 -p 5299 >/dev/null 2>&1 &
  IPERF_PID=$!
  sleep 0.5
  taskset -c "$LOAD_CPUS" iperf3 -c 127.0.0.1 -p 5299 -t 5 -J >"$OUT_DIR/iperf3.json"
  wait "$IPERF_PID" || true
  IPERF_PID=
  LOOPBACK_MBS=$(jq '.end.sum_received.bits_per_second / 8 / 1e6 | floor' "$OUT_DIR/iperf3.json")

  log "O_DIRECT sequential write bandwidth (fio, 1 MiB blocks, io_uring, depth 8)"
  fio --name=seqwrite --directory="$DATA_ROOT" --rw=write --bs=1M --size=2G --direct=1 \
    --ioengine=io_uring --iodepth=8 --end_fsync=1 --output-format=json >"$OUT_DIR/fio-seqwrite.json"
  ODIRECT_MBS=$(jq '.jobs[0].write.bw_bytes / 1e6 | floor' "$OUT_DIR/fio-seqwrite.json")

  log "16 KiB write + fdatasync latency (fio, O_DIRECT)"
  fio --name=fsync --directory="$DATA_ROOT" --rw=write --bs=16k --size=256M --direct=1 \
    --ioengine=sync --fdatasync=1 --runtime=10 --time_based --output-format=json >"$OUT_DIR/fio-fdatasync.json"
  FSYNC_P50_US=$(jq '.jobs[0].sync.lat_ns.percentile["50.000000"] / 1000 | floor' "$OUT_DIR/fio-fdatasync.json")
  FSYNC_P99_US=$(jq '.jobs[0].sync.lat_ns.percentile["99.000000"] / 1000 | floor' "$OUT_DIR/fio-fdatasync.json")
  STALL_MBS=${STALL_MBS:-200}
  log "CPU stalls: both cores busy, alone and while fio writes ${STALL_MBS} MB/s (128 KiB, O_DIRECT, depth 4)"
  python3 "$ROOT/perf/cpu-gaps.py" "$BROKER_CPUS,$LOAD_CPUS" 4 >"$OUT_DIR/cpu-gaps-idle-disk.json"
  fio --name=ratewrite --directory="$DATA_ROOT" --rw=write --bs=128k --size=4G --direct=1 \
    --ioengine=io_uring --iodepth=4 --rate="${STALL_MBS}m" --runtime=6 --time_based --fallocate=native \
    --output-format=json >"$OUT_DIR/fio-ratewrite.json" &
  FIO_PID=$!
  sleep 1
  python3 "$ROOT/perf/cpu-gaps.py" "$BROKER_CPUS,$LOAD_CPUS" 4 >"$OUT_DIR/cpu-gaps-busy-disk.json"
  wait "$FIO_PID"
  stalls() { jq -r '[.cpus[] | "cpu \(.cpu) \(.stalled_fraction * 100 | floor)% (max gap \(.max_gap_ms) ms)"] | join(", ")' "$1"; }
  RATE_LAT=$(jq -r '.jobs[0].write.clat_ns.percentile | "p99 \(.["99.000000"] / 1000 | floor) us, p99.99 \(.["99.990000"] / 1000 | floor) us"' "$OUT_DIR/fio-ratewrite.json")
  rm -f "$DATA_ROOT"/seqwrite.* "$DATA_ROOT"/fsync.* "$DATA_ROOT"/ratewrite.*
  row "| limit | value |"
  row "|---|---|"
  row "| loopback TCP (iperf3) | ${LOOPBACK_MBS} MB/s |"
  row "| O_DIRECT sequential write (fio) | ${ODIRECT_MBS} MB/s |"
  row "| 16 KiB fdatasync latency (fio) | p50 ${FSYNC_P50_US} us, p99 ${FSYNC_P99_US} us |"
  row "| write latency at ${STALL_MBS} MB/s (fio, 128 KiB) | ${RATE_LAT} |"
  row "| time both cores get no CPU, disk idle (perf/cpu-gaps.py) | $(stalls "$OUT_DIR/cpu-gaps-idle-disk.json") |"
  row "| the same while fio writes ${STALL_MBS} MB/s | $(stalls "$OUT_DIR/cpu-gaps-busy-disk.json") |"
  row ""
fi
LIMIT_MBS=$(( ${LOOPBACK_MBS:-0} < ${ODIRECT_MBS:-0} ? ${LOOPBACK_MBS:-0} : ${ODIRECT_MBS:-0} ))

# ---------------------------------------------------------------- ringlog
if [[ $ONLY == limits ]]; then exit 0; fi
log "cargo build --release"
(cd "$ROOT" && cargo build --release -j 2 --bin ringlog --bin ringlog-perf) >&2

# run NAME ARGS...: one generator run; its JSON goes to $OUT_DIR/NAME.json.
run() {
  local name=$1; shift
  local cmd=("$PERF" "$@" --bootstrap "${TARGET_ADDR:-$ADDR}" --cpus "$LOAD_CPUS" --json)
  echo "$name: ${cmd[*]#$ROOT/}" >>"$OUT_DIR/commands.txt"
  log "$name: ${cmd[*]#$ROOT/}"
  # The machine may be shared: keep the load average each run started under.
  echo "$name: loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT_DIR/loadavg.txt"
  if "${cmd[@]}" >"$OUT_DIR/$name.out" 2>"$OUT_DIR/$name.err"; then
    tail -1 "$OUT_DIR/$name.out" >"$OUT_DIR/$name.json"
  else
    echo "$name failed:" >&2; tail -5 "$OUT_DIR/$name.err" >&2
    echo '{}' >"$OUT_DIR/$name.json"
  fi
}

j() { jq -r "$2 // \"n/a\"" "$OUT_DIR/$1.json"; }
ratio() { # value limit
  if [[ $1 == n/a || -z $2 || $2 == 0 ]]; then echo "n/a"; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; fi
}
throughput_row() { # name label
  local mbs rps
  mbs=$(j "$1" '.mb_per_sec | floor'); rps=$(j "$1" '.records_per_sec | floor')
  row "| $2 | $rps rec/s | $mbs MB/s | $(ratio "$mbs" "$LIMIT_MBS") | p99 $(j "$1" .latency_us.p99) us | $(j "$1" .cpu_percent | cut -d. -f1)% $( [[ $(j "$1" .saturated) == true ]] && echo SATURATED) | $(j "$1" .errors) | $(grep "^$1: " "$OUT_DIR/loadavg.txt" | tail -1 | cut -d' ' -f3) |"
}

row "| run | records/s | MB/s | ratio to min(loopback, O_DIRECT) = $LIMIT_MBS MB/s | latency | generator cpu | errors | loadavg at start |"
row "|---|---|---|---|---|---|---|---|"

if want ceiling; then
  # The generator against a sink that acknowledges and discards: the most
  # the generator can show on this machine, whatever the broker.
  SINK_ADDR=127.0.0.1:$((PORT + 1))
  taskset -c "$BROKER_CPUS" "$PERF" sink --listen "$SINK_ADDR" 2>"$OUT_DIR/sink.log" &
  SINK_PID=$!
  sleep 0.5
  for size in 100 1024; do
    batch=$(( size == 100 ? 1000 : 256 ))
    name="ceiling-${size}B"
    TARGET_ADDR=$SINK_ADDR run "$name" produce --topic ceiling --partitions 4 --record-size "$size" --batch-records "$batch" \
      --acks 1 --in-flight 8 --producers 2 --duration 5 --warmup 1 --rate max
    throughput_row "$name" "generator ceiling (sink), ${size} B"
  done
  kill "$SINK_PID" 2>/dev/null || true
  wait "$SINK_PID" 2>/dev/null || true
fi

if want produce; then
  for size in 100 1024; do
    for acks in 1 -1; do
      batch=$(( size == 100 ? 1000 : 256 ))
      start_broker "$BROKER_CPUS" "$DATA_ROOT/produce"
      run "produce-${size}B-acks${acks}" produce --topic "p-$size-$acks" --partitions 4 --record-size "$size" \
        --batch-records "$batch" --acks "$acks" --in-flight 8 --producers 2 --duration "$DURATION" --warmup 2 --rate max
      throughput_row "produce-${size}B-acks${acks}" "max produce ${size} B acks=${acks}"
      stop_broker
    done
  done
fi

if want e2e; then
  max=$(jq -r '.records_per_sec // 0 | floor' "$OUT_DIR/produce-1024B-acks1.json" 2>/dev/null || echo 0)
  [[ $max == 0 ]] && max=100000
  half=${E2E_RATE:-$(( max / 2 ))} # E2E_RATE: when the produce step is not run
  start_broker "$BROKER_CPUS" "$DATA_ROOT/e2e"
  run "e2e-1024B-half" e2e --topic e2e --partitions 4 --record-size 1024 --batch-records 256 --linger-ms 1 \
    --acks 1 --in-flight 8 --producers 2 --consumers 1 --duration "$DURATION" --warmup 2 --rate "$half"
  stop_broker
  row "| e2e 1 KiB at $half rec/s (50% of max) | $(j e2e-1024B-half '.records_per_sec|floor') rec/s | | | p50 $(j e2e-1024B-half .latency_us.p50) p99 $(j e2e-1024B-half .latency_us.p99) p99.99 $(j e2e-1024B-half .latency_us.p9999) max $(j e2e-1024B-half .latency_us.max) us | $(j e2e-1024B-half .cpu_percent | cut -d. -f1)% | $(j e2e-1024B-half .errors) | $(grep "^e2e-1024B-half: " "$OUT_DIR/loadavg.txt" | tail -1 | cut -d' ' -f3) |"
fi

if want catchup; then
  # From cache: 100 MB, less than the broker's batch cache (128 MiB per shard
  # by default), read right after it was written. From disk: 2 GB, read after
  # a restart (O_DIRECT reads; the page cache is not involved).
  start_broker "$BROKER_CPUS" "$DATA_ROOT/catchup"
  run "catchup-fill-small" produce --topic catchup-small --partitions 4 --record-size 1024 --batch-records 256 --acks 1 \
    --in-flight 8 --producers 2 --records 100000 --duration 120 --rate max
  run "catchup-cache" consume --topic catchup-small --from earliest --to-end --consumers 2 --duration 120 --fetch-partition-bytes 4194304
  throughput_row catchup-cache "catch-up consume of 100 MB just written (broker cache)"
  run "catchup-fill" produce --topic catchup --partitions 4 --record-size 1024 --batch-records 256 --acks 1 \
    --in-flight 8 --producers 2 --records 2000000 --duration 120 --rate max
  KEEP_DATA=1 stop_broker
  sync
  start_broker "$BROKER_CPUS" "$DATA_ROOT/catchup"
  run "catchup-disk" consume --topic catchup --from earliest --to-end --consumers 2 --duration 120 --fetch-partition-bytes 4194304
  throughput_row catchup-disk "catch-up consume of 2 GB after a broker restart (disk)"
  stop_broker
fi

if want shards; then
  for cpus in "$BROKER_CPUS" "0,1"; do
    tag=$(echo "$cpus" | tr , _)
    start_broker "$cpus" "$DATA_ROOT/shards-$tag"
    run "shards-$tag" produce --topic shards --partitions 4 --record-size 1024 --batch-records 256 --acks 1 \
      --in-flight 8 --producers 2 --duration "$DURATION" --warmup 2 --rate max
    throughput_row "shards-$tag" "produce 1 KiB acks=1, broker --cpus $cpus"
    stop_broker
  done
fi

if want idle; then
  start_broker "$BROKER_CPUS" "$DATA_ROOT/idle"
  "$PERF" idle --bootstrap "$ADDR" --connections 1000 --duration 25 --cpus "$LOAD_CPUS" >"$OUT_DIR/idle.out" 2>"$OUT_DIR/idle.err" &
  IDLE_PID=$!
  sleep 10 # connect, then let things settle
  ticks() { awk '{print $14 + $15}' "/proc/$BROKER_PID/stat"; }
  t0=$(ticks); sleep 10; t1=$(ticks)
  hz=$(getconf CLK_TCK)
  idle_pct=$(awk -v t="$((t1 - t0))" -v hz="$hz" 'BEGIN { printf "%.2f", t * 100 / hz / 10 }')
  echo "{\"ticks\": $((t1 - t0)), \"clk_tck\": $hz, \"seconds\": 10, \"cpu_percent\": $idle_pct}" >"$OUT_DIR/idle.json"
  wait "$IDLE_PID" || true
  stop_broker
  row "| broker idle with 1,000 connections | | | | | broker cpu ${idle_pct}% of one core over 10 s | |"
fi

if want peer; then
  start_broker "$BROKER_CPUS" "$DATA_ROOT/peer"
  run "peer-100B" produce --topic peer --partitions 2 --record-size 100 --batch-records 1000 --acks 1 \
    --in-flight 1 --producers 2 --duration "$DURATION" --warmup 2 --rate max
  throughput_row peer-100B "peer shape: 100 B, batch 1000, 2 producers, in-flight 1, acks=1"
  stop_broker
  start_broker "$BROKER_CPUS" "$DATA_ROOT/peer"
  run "peer-100B-acks-all" produce --topic peer-all --partitions 2 --record-size 100 --batch-records 1000 --acks -1 \
    --in-flight 1 --producers 2 --duration "$DURATION" --warmup 2 --rate max
  throughput_row peer-100B-acks-all "peer shape, acks=-1 (durable)"
  stop_broker
fi

if want peer-idempotent; then
  for round in $(seq 1 "${ROUNDS:-3}"); do
    for kind in plain idempotent; do
      flag=(); [[ $kind == idempotent ]] && flag=(--idempotent)
      start_broker "$BROKER_CPUS" "$DATA_ROOT/peer-$kind"
      run "peer-$kind-$round" produce --topic "peer-$kind" --partitions 2 --record-size 100 --batch-records 1000 \
        --acks 1 --in-flight 1 --producers 2 --duration "$DURATION" --warmup 2 --rate max "${flag[@]}"
      throughput_row "peer-$kind-$round" "peer shape, acks=1, $kind, round $round"
      stop_broker
    done
  done
fi

log "results in $OUT_DIR"
