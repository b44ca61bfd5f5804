#!/bin/sh
# protoc for prost-build, which generates raft-rs's message types at build
# time (raft's prost codec). The system's protoc when there is one; else the
# protoc that protobuf-build, raft-proto's build dependency, ships for this
# platform, so that a machine with only Rust can build ringlog.
if command -v protoc >/dev/null 2>&1; then
    exec protoc "$@"
fi
case "$(uname -m)" in
    x86_64) bin=protoc-linux-x86_64 ;;
    aarch64) bin=protoc-linux-aarch_64 ;;
    i?86) bin=protoc-linux-x86_32 ;;
    ppc64le) bin=protoc-linux-ppcle_64 ;;
    *) echo "no bundled protoc for $(uname -m): install protoc" >&2; exit 1 ;;
esac
for candidate in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/protobuf-build-0.14.*/bin/$bin; do
    if [ -f "$candidate" ]; then
        [ -x "$candidate" ] || chmod +x "$candidate" 2>/dev/null
        exec "$candidate" "$@"
    fi
done
echo "protoc not found: install protoc, or set PROTOC" >&2
exit 1
