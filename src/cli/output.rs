//! How answers are printed: aligned tables for a person, or one JSON
//! document for a script (`--format json`). Writes go through `Out`, so a
//! closed pipe (`| head`) ends the command instead of panicking in `println!`.

use std::io::{self, Write};

use serde::Serialize;

use super::error::CliError;

/// `--format`: `table` (the default), `json`, or, for `topic consume`, a
/// template of `%k %v %p %o %T %t %h` (key, value, partition, offset,
/// timestamp, topic, headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Template(String),
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Format, String> {
        match text {
            "table" | "text" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            template if template.contains('%') => Ok(Format::Template(template.to_string())),
            other => Err(format!(
                "{other:?} is not table, json or a template such as '%k:%v' (topic consume only)"
            )),
        }
    }
}

/// A titled table of text cells.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub title: Option<String>,
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            title: None,
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn titled(mut self, title: impl Into<String>) -> Table {
        self.title = Some(title.into());
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "one cell per column");
        self.rows.push(cells);
    }

    /// The table as lines: headers, then rows, columns padded to the widest cell.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = String::new();
        if let Some(title) = &self.title {
            text.push_str(title);
            text.push('\n');
        }
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            text.push_str(line.join("  ").trim_end());
            text.push('\n');
        }
        text
    }
}

/// Standard output, with errors that say what was being written.
pub struct Out {
    stdout: io::StdoutLock<'static>,
}

impl Out {
    pub fn new() -> Out {
        Out {
            stdout: io::stdout().lock(),
        }
    }

    pub fn write(&mut self, text: &str) -> Result<(), CliError> {
        self.stdout
            .write_all(text.as_bytes())
            .map_err(|source| CliError::Io {
                what: "writing to stdout",
                source,
            })
    }

    pub fn flush(&mut self) -> Result<(), CliError> {
        self.stdout.flush().map_err(|source| CliError::Io {
            what: "writing to stdout",
            source,
        })
    }

    /// `json` as one pretty document, or the tables one after another.
    pub fn answer(
        &mut self,
        format: &Format,
        json: &impl Serialize,
        tables: &[Table],
    ) -> Result<(), CliError> {
        match format {
            Format::Json => {
                let text = serde_json::to_string_pretty(json)
                    .map_err(|e| CliError::Answer(format!("encoding JSON: {e}")))?;
                self.write(&text)?;
                self.write("\n")?;
            }
            Format::Table => {
                let text: Vec<String> = tables.iter().map(Table::render).collect();
                self.write(&text.join("\n"))?;
            }
            Format::Template(_) => {
                return Err(CliError::usage(
                    "a --format template applies to topic consume only; use table or json",
                ))
            }
        }
        self.flush()
    }
}

/// Describes each of `names` and prints them all: one JSON list, or each
/// one's tables in turn. The first that fails ends the command.
pub fn answer_each<T: Serialize>(
    out: &mut Out,
    format: &Format,
    names: &[String],
    mut describe: impl FnMut(&str) -> Result<T, CliError>,
    tables: impl Fn(&T) -> Vec<Table>,
) -> Result<(), CliError> {
    let mut described = Vec::with_capacity(names.len());
    for name in names {
        described.push(describe(name)?);
    }
    let tables: Vec<Table> = described.iter().flat_map(tables).collect();
    out.answer(format, &described, &tables)
}

/// A list of numbers as `1,2,3`.
pub fn join_ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_every_column_to_its_widest_cell() {
        let mut table = Table::new(&["TOPIC", "PARTITIONS"]);
        table.row(vec!["a-long-name".into(), "3".into()]);
        table.row(vec!["b".into(), "12".into()]);
        assert_eq!(
            table.render(),
            "TOPIC        PARTITIONS\na-long-name  3\nb            12\n"
        );
    }

    #[test]
    fn formats_parse_and_a_word_that_is_no_format_is_refused() {
        assert_eq!("json".parse(), Ok(Format::Json));
        assert_eq!("table".parse(), Ok(Format::Table));
        assert_eq!("%k=%v".parse(), Ok(Format::Template("%k=%v".to_string())));
        assert!("yaml".parse::<Format>().is_err());
    }
}
