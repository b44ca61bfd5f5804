#!/usr/bin/env python3
"""Writes src/kafka/request_shapes.rs: one walker per request type the broker
decodes, translated from kafka-protocol's generated `Decodable` impls.

Each walker reads the same fields in the same order as the crate's decoder,
but only checks lengths against the bytes that remain, so an array that claims
more elements than the frame can hold is refused before the decoder reserves
memory for it. Run it again whenever the kafka-protocol version changes:

    scripts/request_shapes.py ~/.cargo/registry/src/*/kafka-protocol-X.Y.Z > src/kafka/request_shapes.rs
    cargo fmt
"""
import re
import sys
from pathlib import Path

# (ApiKey variant, module, top-level type): the requests whose bodies the handlers decode.
REQUESTS = [
    ("Produce", "produce_request", "ProduceRequest"),
    ("Fetch", "fetch_request", "FetchRequest"),
    ("ListOffsets", "list_offsets_request", "ListOffsetsRequest"),
    ("Metadata", "metadata_request", "MetadataRequest"),
    ("OffsetCommit", "offset_commit_request", "OffsetCommitRequest"),
    ("OffsetFetch", "offset_fetch_request", "OffsetFetchRequest"),
    ("FindCoordinator", "find_coordinator_request", "FindCoordinatorRequest"),
    ("JoinGroup", "join_group_request", "JoinGroupRequest"),
    ("Heartbeat", "heartbeat_request", "HeartbeatRequest"),
    ("LeaveGroup", "leave_group_request", "LeaveGroupRequest"),
    ("SyncGroup", "sync_group_request", "SyncGroupRequest"),
    ("DescribeGroups", "describe_groups_request", "DescribeGroupsRequest"),
    ("ListGroups", "list_groups_request", "ListGroupsRequest"),
    ("CreateTopics", "create_topics_request", "CreateTopicsRequest"),
    ("DeleteTopics", "delete_topics_request", "DeleteTopicsRequest"),
    ("DeleteRecords", "delete_records_request", "DeleteRecordsRequest"),
    ("DescribeConfigs", "describe_configs_request", "DescribeConfigsRequest"),
    ("AlterConfigs", "alter_configs_request", "AlterConfigsRequest"),
    ("CreatePartitions", "create_partitions_request", "CreatePartitionsRequest"),
    ("DeleteGroups", "delete_groups_request", "DeleteGroupsRequest"),
    ("IncrementalAlterConfigs", "incremental_alter_configs_request", "IncrementalAlterConfigsRequest"),
    ("OffsetDelete", "offset_delete_request", "OffsetDeleteRequest"),
    ("DescribeCluster", "describe_cluster_request", "DescribeClusterRequest"),
    ("SaslHandshake", "sasl_handshake_request", "SaslHandshakeRequest"),
    ("SaslAuthenticate", "sasl_authenticate_request", "SaslAuthenticateRequest"),
    ("DescribeUserScramCredentials", "describe_user_scram_credentials_request", "DescribeUserScramCredentialsRequest"),
    ("AlterUserScramCredentials", "alter_user_scram_credentials_request", "AlterUserScramCredentialsRequest"),
    ("CreateAcls", "create_acls_request", "CreateAclsRequest"),
    ("DescribeAcls", "describe_acls_request", "DescribeAclsRequest"),
    ("DeleteAcls", "delete_acls_request", "DeleteAclsRequest"),
    ("InitProducerId", "init_producer_id_request", "InitProducerIdRequest"),
    ("DescribeProducers", "describe_producers_request", "DescribeProducersRequest"),
    ("AddPartitionsToTxn", "add_partitions_to_txn_request", "AddPartitionsToTxnRequest"),
    ("AddOffsetsToTxn", "add_offsets_to_txn_request", "AddOffsetsToTxnRequest"),
    ("EndTxn", "end_txn_request", "EndTxnRequest"),
    ("TxnOffsetCommit", "txn_offset_commit_request", "TxnOffsetCommitRequest"),
    ("DescribeTransactions", "describe_transactions_request", "DescribeTransactionsRequest"),
    ("ListTransactions", "list_transactions_request", "ListTransactionsRequest"),
    ("WriteTxnMarkers", "write_txn_markers_request", "WriteTxnMarkersRequest"),
    ("OffsetForLeaderEpoch", "offset_for_leader_epoch_request", "OffsetForLeaderEpochRequest"),
    ("DescribeQuorum", "describe_quorum_request", "DescribeQuorumRequest"),
    ("ElectLeaders", "elect_leaders_request", "ElectLeadersRequest"),
]

SCALARS = {
    "Int8": "w.fixed(1)",
    "Int16": "w.fixed(2)",
    "UInt16": "w.fixed(2)",
    "Int32": "w.fixed(4)",
    "UInt32": "w.fixed(4)",
    "Int64": "w.fixed(8)",
    "Float64": "w.fixed(8)",
    "Boolean": "w.fixed(1)",
    "Uuid": "w.fixed(16)",
    "String": "w.string()",
    "CompactString": "w.compact_string()",
    "Bytes": "w.bytes()",
    "CompactBytes": "w.compact_bytes()",
}


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def fn_name(module, struct):
    return f"{module.removesuffix('_request')}_{snake(struct)}"


def field_types(source):
    """(struct, field) -> the element or struct type named in the field's Rust type."""
    types = {}
    for struct, body in re.findall(r"pub struct (\w+) \{(.*?)\n\}", source, re.S):
        for field, rust_type in re.findall(r"pub (\w+): ([^,]+),", body):
            inner = re.sub(r"^(Option<)?(Vec<)?(super::)?", "", rust_type).rstrip(">")
            types[(struct, field)] = inner
    return types


def walk_expr(decoder, module, struct, field, types):
    """The walker call for one `types::...` decoder expression."""
    decoder = decoder.replace("types::", "")
    array = re.fullmatch(r"(Compact)?Array\((.*)\)", decoder)
    if array:
        method = "compact_array" if array.group(1) else "array"
        element = walk_expr(array.group(2), module, struct, field, types)
        return f"w.{method}(|w| {element})"
    if decoder == "Struct { version }":
        return f"{fn_name(module, types[(struct, field)])}(w, version)"
    if decoder in SCALARS:
        return SCALARS[decoder]
    raise SystemExit(f"{module}::{struct}.{field}: no walker for {decoder}")


DECODE = re.compile(r"(types::.*?)\.decode\(buf\)\?")


def translate(module, struct, body, types):
    out = []
    lines = body.split("\n")
    field = None
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line:
            continue
        if (line.startswith("if version <") and "||" in line) or re.fullmatch(r"if version != \d+ \{", line):
            out.append(f"{line} return Err(ShapeError::Version(version)); }}")
            i += 2  # bail!, closing brace
            continue
        m = re.fullmatch(r"let (\w+) = if (.*) \{", line)
        if m:
            field = m.group(1)
            out.append(f"if {m.group(2)} {{")
            continue
        m = re.fullmatch(r"let (\w+) = (types::.*)\.decode\(buf\)\?;", line)
        if m:
            out.append(walk_expr(m.group(2), module, struct, m.group(1), types) + "?;")
            continue
        if field:
            m = DECODE.fullmatch(line)
            if m:
                out.append(walk_expr(m.group(1), module, struct, field, types) + "?;")
                continue
            if re.fullmatch(r"if .* \{", line) or line == "} else {":
                out.append(line)
                continue
            if line == "}":
                out.append(line)
                continue
            if line == "};":
                out.append("}")
                field = None
                continue
        if field:
            continue  # a default value where the field is absent
        if line.startswith("let mut unknown_tagged_fields"):
            i = tagged(module, struct, lines, i, types, out)
            continue
        if re.fullmatch(r"let \w+ = [^t].*;", line):
            continue  # a field no served version carries
        if line.startswith("let mut "):
            continue  # a tagged field's default
        if line.startswith("Ok(Self") or line == "Ok(Self {}) ":
            break
        raise SystemExit(f"{module}::{struct}: cannot translate `{line}`")
    out.append("Ok(())")
    return out


def tagged(module, struct, lines, i, types, out):
    """Translates the tagged-fields block that starts at lines[i]."""
    guarded = re.fullmatch(r"if (.*) \{", lines[i].strip())
    condition = guarded.group(1) if guarded else None
    if not guarded:
        i += 1  # always flexible: the block is the `for` loop after the count
    depth, j, arms = 0, i, []
    while True:
        line = lines[j].strip()
        depth += line.count("{") - line.count("}")
        m = re.fullmatch(r"(\d+) => \{", line)
        if m:
            guarded = re.fullmatch(r"if (.*) \{", lines[j + 1].strip())
            tag_condition = guarded.group(1) if guarded else "true"
            assign_line = lines[j + 2] if guarded else lines[j + 1]
            assign = re.fullmatch(r"(\w+) = (types::.*)\.decode\(buf\)\?;", assign_line.strip())
            call = walk_expr(assign.group(2), module, struct, assign.group(1), types)
            arms.append((m.group(1), tag_condition, call))
        j += 1
        if depth == 0:
            break
    name = "no_known_tags"
    if arms:
        name = f"{fn_name(module, struct)}_tag"
        TAG_FNS.append((name, arms))
    call = f"w.tagged_fields(version, {name})?;"
    out.append(f"if {condition} {{ {call} }}" if condition else call)
    return j


TAG_FNS = []


def main():
    root = Path(sys.argv[1]) / "src" / "messages"
    print("// Generated by scripts/request_shapes.py from kafka-protocol's request decoders.")
    print("// Do not edit by hand; regenerate when the kafka-protocol version changes.")
    print()
    print("use kafka_protocol::messages::ApiKey;")
    print()
    print("use super::request_shape::{no_known_tags, ShapeError, Walker};")
    print()
    print("/// Walks a request body of `key` at `version`; `None` for an API whose body is not walked.")
    print("pub(super) fn walk(key: ApiKey, w: &mut Walker, version: i16) -> Option<Result<(), ShapeError>> {")
    print("    Some(match key {")
    for api, module, top in REQUESTS:
        print(f"        ApiKey::{api} => {fn_name(module, top)}(w, version),")
    print("        _ => return None,")
    print("    })")
    print("}")
    for api, module, top in REQUESTS:
        source = (root / f"{module}.rs").read_text()
        types = field_types(source)
        for struct, body in re.findall(
            r"impl Decodable for (\w+) \{\n    fn decode<B: ByteBuf>\(buf: &mut B, version: i16\) -> Result<Self> \{\n(.*?)\n    \}\n\}",
            source,
            re.S,
        ):
            print()
            print(f"fn {fn_name(module, struct)}(w: &mut Walker, version: i16) -> Result<(), ShapeError> {{")
            code = "\n".join(translate(module, struct, body, types))
            # A field absent at some versions leaves an empty `else`.
            code = code.replace("} else {\n}", "}")
            for line in code.split("\n"):
                print(f"    {line}")
            print("}")
        for name, arms in TAG_FNS:
            print()
            print(f"fn {name}(w: &mut Walker, version: i16, tag: u32) -> Result<bool, ShapeError> {{")
            print("    match tag {")
            for tag, condition, call in arms:
                if condition == "true":
                    print(f"        {tag} => {call}.map(|()| true),")
                else:
                    print(f"        {tag} if {condition} => {call}.map(|()| true),")
                    print(f"        {tag} => Err(ShapeError::TagVersion {{ tag, version }}),")
            print("        _ => Ok(false),")
            print("    }")
            print("}")
        TAG_FNS.clear()


main()
