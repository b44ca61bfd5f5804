#!/bin/sh
# 1 KiB produce and catch-up read over TLS against plaintext, on one broker
# in one sitting: kcat (librdkafka) drives both listeners of the same
# process (perf/security.sh makes the same comparison with ringlog-perf).
#
#   perf/tls-kcat.sh target/release/ringlog /tmp/tls-perf
#
# The broker runs on CPU 0, kcat on CPU 1. RECORDS (default 200000) records
# of 1024 bytes each; RUNS (default 2) alternating runs of each listener.
set -eu
broker=$(realpath "$1")
dir=$2
records=${RECORDS:-200000}
runs=${RUNS:-2}
plain_port=19192
tls_port=19193
mkdir -p "$dir"
cd "$dir"
rm -rf data
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout server.key -out server.pem -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 2>/dev/null
python3 -c "import sys; sys.stdout.write(('x' * 1024 + '\n') * $records)" > records.txt
taskset -c 0 "$broker" --listen 127.0.0.1:$plain_port \
    --listener SSL://127.0.0.1:$tls_port --ssl-certificate server.pem --ssl-key server.key \
    --data-dir data --cpus 0 2> broker.log &
pid=$!
trap 'kill $pid' EXIT
until grep -qs "accepting connections" broker.log; do sleep 0.2; done

now() { date +%s.%N; }
rate() { python3 -c "print(f'{$records * 1024 / ($2 - $1) / 1e6:.0f} MB/s')"; }

for run in $(seq "$runs"); do
    for protocol in PLAINTEXT SSL; do
        if [ $protocol = SSL ]; then
            port=$tls_port
            tls="-X security.protocol=SSL -X ssl.ca.location=server.pem"
        else
            port=$plain_port
            tls=""
        fi
        topic=perf-$protocol-$run
        start=$(now)
        # shellcheck disable=SC2086
        taskset -c 1 kcat -P -b 127.0.0.1:$port -t $topic $tls -X acks=1 -X linger.ms=5 \
            -X batch.size=1000000 -l records.txt
        middle=$(now)
        # shellcheck disable=SC2086
        taskset -c 1 kcat -C -b 127.0.0.1:$port -t $topic $tls -o beginning -e -q > /dev/null
        end=$(now)
        echo "run $run $protocol: produce $(rate "$start" "$middle"), catch-up read $(rate "$middle" "$end")"
    done
done
