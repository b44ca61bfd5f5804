//! How `topic consume` prints one record: its value (the default), a JSON
//! object, or a template of `%k %v %p %o %T %t %h` with `\n`, `\t` and `%%`.

use kafka_protocol::records::Record;
use serde_json::{json, Map, Value};

use super::error::CliError;
use super::output::Format;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(String),
    Key,
    Value,
    Partition,
    Offset,
    Timestamp,
    Topic,
    Headers,
}

/// One record's line, chosen by `--format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordFormat {
    Value,
    Json,
    Template(Vec<Piece>),
}

impl RecordFormat {
    pub fn new(format: &Format) -> Result<RecordFormat, CliError> {
        Ok(match format {
            Format::Table => RecordFormat::Value,
            Format::Json => RecordFormat::Json,
            Format::Template(template) => RecordFormat::Template(parse(template)?),
        })
    }

    /// The line for `record` of `topic`/`partition`, newline included.
    pub fn render(&self, topic: &str, partition: i32, record: &Record) -> String {
        let mut line = match self {
            RecordFormat::Value => text(record.value.as_deref()),
            RecordFormat::Json => json_line(topic, partition, record),
            RecordFormat::Template(pieces) => pieces
                .iter()
                .map(|piece| match piece {
                    Piece::Literal(text) => text.clone(),
                    Piece::Key => text(record.key.as_deref()),
                    Piece::Value => text(record.value.as_deref()),
                    Piece::Partition => partition.to_string(),
                    Piece::Offset => record.offset.to_string(),
                    Piece::Timestamp => record.timestamp.to_string(),
                    Piece::Topic => topic.to_string(),
                    Piece::Headers => headers_text(record),
                })
                .collect(),
        };
        line.push('\n');
        line
    }
}

fn parse(template: &str) -> Result<Vec<Piece>, CliError> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        let piece = match c {
            '%' => match chars.next() {
                Some('k') => Piece::Key,
                Some('v') => Piece::Value,
                Some('p') => Piece::Partition,
                Some('o') => Piece::Offset,
                Some('T') => Piece::Timestamp,
                Some('t') => Piece::Topic,
                Some('h') => Piece::Headers,
                Some('%') => {
                    literal.push('%');
                    continue;
                }
                other => {
                    return Err(CliError::usage(format!(
                        "--format: unknown %{} (use %k key, %v value, %p partition, %o offset, \
                         %T timestamp, %t topic, %h headers, %% for %)",
                        other.map(String::from).unwrap_or_default()
                    )))
                }
            },
            '\\' => {
                match chars.next() {
                    Some('n') => literal.push('\n'),
                    Some('t') => literal.push('\t'),
                    Some(other) => {
                        literal.push('\\');
                        literal.push(other);
                    }
                    None => literal.push('\\'),
                }
                continue;
            }
            c => {
                literal.push(c);
                continue;
            }
        };
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        pieces.push(piece);
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

/// Bytes as text (invalid UTF-8 replaced); null as an empty string.
fn text(bytes: Option<&[u8]>) -> String {
    bytes
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn headers_text(record: &Record) -> String {
    record
        .headers
        .iter()
        .map(|(name, value)| format!("{}={}", name.as_str(), text(value.as_deref())))
        .collect::<Vec<_>>()
        .join(",")
}

fn json_line(topic: &str, partition: i32, record: &Record) -> String {
    let optional = |bytes: Option<&[u8]>| match bytes {
        Some(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        None => Value::Null,
    };
    let headers: Map<String, Value> = record
        .headers
        .iter()
        .map(|(name, value)| (name.to_string(), optional(value.as_deref())))
        .collect();
    json!({
        "topic": topic,
        "partition": partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": optional(record.key.as_deref()),
        "value": optional(record.value.as_deref()),
        "headers": headers,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ringlog::client::{BatchBuilder, BatchOptions};

    fn record() -> Record {
        let mut builder = BatchBuilder::new(BatchOptions::default());
        builder.push(
            Some(Bytes::from_static(b"user1")),
            Some(Bytes::from_static(b"hello")),
            1_700,
        );
        let mut record = builder.records()[0].clone();
        record.offset = 42;
        record
    }

    #[test]
    fn templates_print_each_field_and_escapes() {
        let format = RecordFormat::new(&Format::Template("%t/%p@%o %T %k=%v\\t100%%".into()))
            .expect("a valid template");
        assert_eq!(
            format.render("events", 3, &record()),
            "events/3@42 1700 user1=hello\t100%\n"
        );
        assert!(RecordFormat::new(&Format::Template("%x".into())).is_err());
    }

    #[test]
    fn json_lines_carry_every_field() {
        let line = RecordFormat::Json.render("events", 0, &record());
        let value: Value = serde_json::from_str(&line).expect("one JSON object");
        assert_eq!(value["key"], "user1");
        assert_eq!(value["value"], "hello");
        assert_eq!(value["offset"], 42);
        assert_eq!(value["timestamp"], 1700);
        assert_eq!(RecordFormat::Value.render("t", 0, &record()), "hello\n");
    }
}
