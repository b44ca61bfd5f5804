#!/usr/bin/env bash
# What security costs on one broker shard, in one sitting:
#   handshakes  new connections per second (open, ApiVersions, TLS and/or a
#               SCRAM-SHA-512 login, close) on PLAINTEXT, SSL, SASL_PLAINTEXT
#               and SASL_SSL listeners of one broker, and PLAIN over SASL_SSL;
#   acl         the peer shape (100 B records, batches of 1,000, 2 producers,
#               1 request in flight, acks=1) with the authorizer on and 1,000
#               ACLs against it off, ROUNDS alternating pairs, a fresh broker
#               each run;
#   tls         1 KiB produce and the catch-up read over TLS against
#               plaintext, ringlog-perf on both sides.
#
#   perf/security.sh [OUT_DIR]
#
# Needs a release build (ringlog, ringlog-perf), openssl, jq, and Python with
# confluent-kafka ($PYTHON, default .venv/bin/python) to create the ACLs.
# Knobs: ONLY ("handshakes acl tls"), DURATION (5 s), WARMUP (2 s), ROUNDS (3),
# BROKER_CPUS (0), LOAD_CPUS (1), HANDSHAKE_THREADS (2).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BROKER=${BROKER:-$ROOT/target/release/ringlog}
PERF=${PERF:-$ROOT/target/release/ringlog-perf}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
ONLY=${ONLY:-"handshakes acl tls"}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
BROKER_CPUS=${BROKER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
HANDSHAKE_THREADS=${HANDSHAKE_THREADS:-2}
OUT=${1:-$ROOT/perf/results/security-$(date -u +%Y%m%dT%H%M%SZ)}
PLAIN=127.0.0.1:29481
SSL=127.0.0.1:29482
SASL=127.0.0.1:29483
SASL_SSL=127.0.0.1:29484
BROKER_PID=
BROKER_DATA=

mkdir -p "$OUT"
want() { [[ " $ONLY " == *" $1 "* ]]; }
log() { echo "== $*" >&2; }

cd "$OUT"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout ca.key -out ca.pem -days 1 -subj /CN=ringlog-perf-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -out server.pem -days 1 -extfile server.ext 2>/dev/null

start_broker() { # $1 = data dir, then extra broker flags
  local data=$1
  shift
  rm -rf "$data"
  BROKER_DATA=$data
  "$BROKER" --cpus "$BROKER_CPUS" --data-dir "$data" --listen "$PLAIN" \
    --listener "SSL://$SSL" --listener "SASL_PLAINTEXT://$SASL" --listener "SASL_SSL://$SASL_SSL" \
    --ssl-certificate server.pem --ssl-key server.key --metrics-listen none \
    --add-scram 'SCRAM-SHA-512=[name=admin,password=admin-secret]' --super-users User:admin \
    "$@" >"$data.log" 2>&1 &
  BROKER_PID=$!
  until grep -qs "accepting connections" "$data.log"; do
    kill -0 "$BROKER_PID" 2>/dev/null || { cat "$data.log" >&2; exit 1; }
    sleep 0.1
  done
}

stop_broker() {
  [[ -n $BROKER_PID ]] || return 0
  kill -TERM "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=
  # The data directory (segments reserve disk ahead of their writes) goes;
  # its log stays beside it.
  rm -rf "$BROKER_DATA"
}
trap stop_broker EXIT

perf() { "$PERF" --cpus "$LOAD_CPUS" --json "$@" | tail -1; }

SCRAM=(-X sasl.mechanism=SCRAM-SHA-512 -X sasl.username=admin -X sasl.password=admin-secret)
TLS=(-X ssl.ca.location=ca.pem)

if want handshakes; then
  start_broker "$OUT/handshakes"
  for case in PLAINTEXT SSL SASL_PLAINTEXT SASL_SSL SASL_SSL_PLAIN; do
    case $case in
      PLAINTEXT) args=(--bootstrap "$PLAIN") ;;
      SSL) args=(--bootstrap "$SSL" -X security.protocol=SSL "${TLS[@]}") ;;
      SASL_PLAINTEXT) args=(--bootstrap "$SASL" -X security.protocol=SASL_PLAINTEXT "${SCRAM[@]}") ;;
      SASL_SSL) args=(--bootstrap "$SASL_SSL" -X security.protocol=SASL_SSL "${SCRAM[@]}" "${TLS[@]}") ;;
      # PLAIN: the broker hashes the password (PBKDF2, 4,096 iterations) per login.
      SASL_SSL_PLAIN) args=(--bootstrap "$SASL_SSL" -X security.protocol=SASL_SSL -X sasl.mechanism=PLAIN
        -X sasl.username=admin -X sasl.password=admin-secret "${TLS[@]}") ;;
    esac
    rate=$(perf handshakes --producers "$HANDSHAKE_THREADS" --duration "$DURATION" --warmup 1 "${args[@]}" |
      jq -r '.connections_per_sec | floor')
    echo "handshakes $case: $rate connections/s"
  done
  stop_broker
fi

# 1,000 ACLs: what the peer shape's producers need (User:ANONYMOUS on the
# PLAINTEXT listener), 499 more on the same topic for other users and 499 on
# other topics, literal and prefixed.
ACLS='
import sys
from confluent_kafka.admin import (AdminClient, AclBinding, ResourceType, ResourcePatternType,
    AclOperation, AclPermissionType)
admin = AdminClient({"bootstrap.servers": sys.argv[1], "security.protocol": "SASL_PLAINTEXT",
    "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "admin", "sasl.password": "admin-secret"})
allow, anonymous = AclPermissionType.ALLOW, "User:ANONYMOUS"
acls = [AclBinding(ResourceType.TOPIC, "peer", ResourcePatternType.LITERAL, anonymous, "*", AclOperation.ALL, allow),
        AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, anonymous, "*", AclOperation.CREATE, allow)]
acls += [AclBinding(ResourceType.TOPIC, "peer", ResourcePatternType.LITERAL, "User:user-%d" % i, "*", AclOperation.READ, allow)
         for i in range(499)]
acls += [AclBinding(ResourceType.TOPIC, "other-%d" % i, ResourcePatternType.PREFIXED if i % 2 else ResourcePatternType.LITERAL,
                    "User:user-%d" % i, "*", AclOperation.WRITE, allow) for i in range(499)]
for start in range(0, len(acls), 100):
    for future in admin.create_acls(acls[start:start + 100]).values():
        future.result(timeout=30)
print(len(acls))
'

if want acl; then
  for round in $(seq "$ROUNDS"); do
    for kind in off on; do
      if [[ $kind == on ]]; then
        start_broker "$OUT/acl-$kind-$round" --authorizer true
        count=$("$PYTHON" -c "$ACLS" "$SASL")
      else
        start_broker "$OUT/acl-$kind-$round"
        count=0
      fi
      rate=$(perf produce --bootstrap "$PLAIN" --topic peer --partitions 2 --record-size 100 \
        --batch-records 1000 --acks 1 --in-flight 1 --producers 2 --duration "$DURATION" \
        --warmup "$WARMUP" --rate max | jq -r '"\(.records_per_sec | floor) rec/s errors \(.errors)"')
      echo "peer shape round $round authorizer $kind ($count ACLs): $rate"
      stop_broker
    done
  done
fi

if want tls; then
  start_broker "$OUT/tls"
  for round in $(seq "$ROUNDS"); do
    for kind in plaintext tls; do
      if [[ $kind == tls ]]; then
        args=(--bootstrap "$SSL" -X security.protocol=SSL "${TLS[@]}")
      else
        args=(--bootstrap "$PLAIN")
      fi
      topic=tls-$kind-$round
      produce=$(perf produce "${args[@]}" --topic "$topic" --partitions 2 --record-size 1024 \
        --batch-records 100 --acks 1 --in-flight 5 --producers 2 --duration "$DURATION" \
        --warmup "$WARMUP" --rate max | jq -r '"\(.mb_per_sec | floor) MB/s"')
      read=$(perf consume "${args[@]}" --topic "$topic" --no-create --from earliest --to-end \
        --duration 600 | jq -r '"\(.mb_per_sec | floor) MB/s"')
      echo "1 KiB round $round $kind: produce $produce, catch-up read $read"
    done
  done
  stop_broker
fi
