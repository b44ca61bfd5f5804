//! Reading a broker's metrics endpoint: a bounded HTTP/1.1 GET over
//! `std::net::TcpStream`, and the Prometheus text parsed into series.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long one GET of the metrics endpoint may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// GETs `path`; the status code and body, or `None` when nothing answers.
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some((status, body.to_string()))
}

/// A series' labels, by name.
pub type Labels = BTreeMap<String, String>;

/// One scrape: every series by name, then by its labels.
#[derive(Debug, Default)]
pub struct Scrape {
    pub series: BTreeMap<String, Vec<(Labels, f64)>>,
    pub text: String,
}

impl Scrape {
    /// The value of `name` with exactly `labels`, if the scrape has it.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.series
            .get(name)?
            .iter()
            .find(|(l, _)| *l == wanted)
            .map(|(_, v)| *v)
    }

    /// Like [`Scrape::get`], failing the test with the scrape when it is missing.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in the scrape:\n{}", self.text))
    }

    /// The sum of per-partition series `name` over partitions `0..partitions` of `topic`.
    pub fn partition_sum(&self, name: &str, topic: &str, partitions: i32) -> f64 {
        (0..partitions)
            .map(|p| {
                let partition = p.to_string();
                self.value(name, &[("topic", topic), ("partition", &partition)])
            })
            .sum()
    }

    /// Whether any series of `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.series.contains_key(name)
    }
}

/// Scrapes `/metrics` and parses it; fails the test when it does not answer 200.
pub fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = get(addr, "/metrics").expect("the metrics endpoint answers");
    assert_eq!(status, 200, "/metrics answers 200:\n{body}");
    parse(&body)
}

/// Parses the text format (label values here hold no quotes or commas).
pub fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape {
        text: text.to_string(),
        ..Scrape::default()
    };
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or(f64::NAN),
        };
        let (name, labels) = match key.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (key, ""),
        };
        let labels = labels
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        scrape
            .series
            .entry(name.to_string())
            .or_default()
            .push((labels, value));
    }
    scrape
}
