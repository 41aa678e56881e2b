//! Percentiles and the report every scenario prints, as a table or as one JSON object.

use std::fmt::Write as _;
use std::time::Duration;

/// Nearest-rank percentile of an ascending slice (`p` in 0..=1); zero for an empty slice.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Latency summary of one measured quantity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn of(mut samples: Vec<Duration>) -> Summary {
        samples.sort_unstable();
        Summary {
            count: samples.len(),
            p50: percentile(&samples, 0.5),
            p90: percentile(&samples, 0.9),
            p99: percentile(&samples, 0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
    Text(String),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Int(v as u64)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

/// What a scenario measured: named figures and latency summaries.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub scenario: &'static str,
    pub figures: Vec<(&'static str, Value)>,
    pub latencies: Vec<(&'static str, Summary)>,
    /// Raw samples of each latency, kept (and written to JSON under `"samples"`, in
    /// nanoseconds) only by worker processes, whose parent merges them.
    pub samples: Option<Vec<(&'static str, Vec<Duration>)>>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".to_owned()
    }
}

impl Report {
    pub fn new(scenario: &'static str) -> Report {
        Report {
            scenario,
            figures: Vec::new(),
            latencies: Vec::new(),
            samples: None,
        }
    }

    /// Keeps the raw samples of the latencies added from now on (for a parent process).
    pub fn keep_samples(&mut self) -> &mut Self {
        self.samples.get_or_insert_with(Vec::new);
        self
    }

    pub fn figure(&mut self, name: &'static str, value: impl Into<Value>) -> &mut Self {
        self.figures.push((name, value.into()));
        self
    }

    pub fn latency(&mut self, name: &'static str, samples: Vec<Duration>) -> &mut Self {
        if let Some(kept) = &mut self.samples {
            kept.push((name, samples.clone()));
        }
        self.latencies.push((name, Summary::of(samples)));
        self
    }

    pub fn to_json(&self) -> String {
        let mut parts = vec![format!("\"scenario\":{}", json_string(self.scenario))];
        for (name, v) in &self.figures {
            let v = match v {
                Value::Int(i) => i.to_string(),
                Value::Float(f) => json_number(*f),
                Value::Text(t) => json_string(t),
            };
            parts.push(format!("{}:{v}", json_string(name)));
        }
        for (name, s) in &self.latencies {
            parts.push(format!(
                "{}:{{\"count\":{},\"p50_ms\":{},\"p90_ms\":{},\"p99_ms\":{},\"max_ms\":{}}}",
                json_string(name),
                s.count,
                json_number(ms(s.p50)),
                json_number(ms(s.p90)),
                json_number(ms(s.p99)),
                json_number(ms(s.max)),
            ));
        }
        if let Some(kept) = &self.samples {
            let lists: Vec<String> = kept
                .iter()
                .map(|(name, v)| {
                    let ns: Vec<String> = v.iter().map(|d| d.as_nanos().to_string()).collect();
                    format!("{}:[{}]", json_string(name), ns.join(","))
                })
                .collect();
            parts.push(format!("\"samples\":{{{}}}", lists.join(",")));
        }
        format!("{{{}}}", parts.join(","))
    }

    pub fn to_table(&self) -> String {
        let mut out = format!("{}\n", self.scenario);
        let width = self.figures.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (name, v) in &self.figures {
            let v = match v {
                Value::Int(i) => i.to_string(),
                Value::Float(f) => format!("{f:.1}"),
                Value::Text(t) => t.clone(),
            };
            let _ = writeln!(out, "  {name:<width$}  {v}");
        }
        if !self.latencies.is_empty() {
            let w = self
                .latencies
                .iter()
                .map(|(n, _)| n.len())
                .max()
                .unwrap_or(0)
                .max(12);
            let _ = writeln!(
                out,
                "  {:<w$} {:>9} {:>10} {:>10} {:>10} {:>10}",
                "latency", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
            );
            for (name, s) in &self.latencies {
                let _ = writeln!(
                    out,
                    "  {name:<w$} {:>9} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
                    s.count,
                    ms(s.p50),
                    ms(s.p90),
                    ms(s.p99),
                    ms(s.max)
                );
            }
        }
        out
    }

    pub fn print(&self, json: bool) {
        if json {
            println!("{}", self.to_json());
        } else {
            print!("{}", self.to_table());
        }
    }
}

/// A parsed JSON value: just enough to read back the reports of worker processes.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn parse(text: &str) -> anyhow::Result<Json> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.space();
        anyhow::ensure!(p.i == p.s.len(), "trailing characters at byte {}", p.i);
        Ok(v)
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Text(t) => Some(t),
            _ => None,
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn space(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> anyhow::Result<()> {
        self.space();
        anyhow::ensure!(
            self.s.get(self.i) == Some(&c),
            "expected '{}' at byte {}",
            c as char,
            self.i
        );
        self.i += 1;
        Ok(())
    }

    fn value(&mut self, depth: usize) -> anyhow::Result<Json> {
        anyhow::ensure!(depth < 32, "JSON nested too deeply");
        self.space();
        let rest = &self.s[self.i..];
        match rest.first() {
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.space();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Object(fields));
                }
                loop {
                    self.space();
                    let key = self.string()?;
                    self.eat(b':')?;
                    fields.push((key, self.value(depth + 1)?));
                    self.space();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Object(fields));
                        }
                        _ => anyhow::bail!("expected ',' or '}}' at byte {}", self.i),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.space();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.space();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => anyhow::bail!("expected ',' or ']' at byte {}", self.i),
                    }
                }
            }
            Some(b'"') => Ok(Json::Text(self.string()?)),
            _ if rest.starts_with(b"null") => {
                self.i += 4;
                Ok(Json::Null)
            }
            _ if rest.starts_with(b"true") => {
                self.i += 4;
                Ok(Json::Bool(true))
            }
            _ if rest.starts_with(b"false") => {
                self.i += 5;
                Ok(Json::Bool(false))
            }
            _ => {
                let len = rest
                    .iter()
                    .take_while(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
                    .count();
                let text = std::str::from_utf8(&rest[..len])?;
                let n = text
                    .parse::<f64>()
                    .map_err(|_| anyhow::anyhow!("bad JSON value at byte {}", self.i))?;
                self.i += len;
                Ok(Json::Number(n))
            }
        }
    }

    fn string(&mut self) -> anyhow::Result<String> {
        anyhow::ensure!(
            self.s.get(self.i) == Some(&b'"'),
            "expected a string at byte {}",
            self.i
        );
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                anyhow::bail!("unterminated string")
            };
            self.i += 1;
            match c {
                b'"' => return Ok(String::from_utf8(out)?),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        anyhow::bail!("unterminated escape")
                    };
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self.s.get(self.i..self.i + 4).unwrap_or_default();
                            let code = u32::from_str_radix(std::str::from_utf8(hex)?, 16)?;
                            self.i += 4;
                            let ch = char::from_u32(code).unwrap_or('\u{fffd}');
                            out.extend_from_slice(ch.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v = ms_list(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&v, 0.9), Duration::from_millis(90));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&v, 0.0), Duration::from_millis(1));
    }

    #[test]
    fn percentiles_of_tiny_and_empty_sets() {
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        let one = ms_list(&[7]);
        assert_eq!(percentile(&one, 0.01), Duration::from_millis(7));
        assert_eq!(percentile(&one, 0.99), Duration::from_millis(7));
        let two = ms_list(&[1, 9]);
        assert_eq!(percentile(&two, 0.5), Duration::from_millis(1));
        assert_eq!(percentile(&two, 0.51), Duration::from_millis(9));
    }

    #[test]
    fn summary_sorts_its_samples() {
        let s = Summary::of(ms_list(&[5, 1, 4, 2, 3]));
        assert_eq!(s.count, 5);
        assert_eq!(s.p50, Duration::from_millis(3));
        assert_eq!(s.max, Duration::from_millis(5));
    }

    #[test]
    fn json_is_one_object_with_escaped_text() {
        let mut r = Report::new("idle");
        r.figure("users", 3usize)
            .figure("kb_per_user", 1.5f64)
            .figure("note", "a \"b\"\n")
            .latency("login", ms_list(&[1, 2]));
        assert_eq!(
            r.to_json(),
            "{\"scenario\":\"idle\",\"users\":3,\"kb_per_user\":1.500,\"note\":\"a \\\"b\\\"\\u000a\",\
             \"login\":{\"count\":2,\"p50_ms\":1.000,\"p90_ms\":2.000,\"p99_ms\":2.000,\"max_ms\":2.000}}"
        );
        let table = r.to_table();
        assert!(table.starts_with("idle\n"));
        assert!(table.contains("kb_per_user"));
        assert!(table.contains("login"));
    }

    #[test]
    fn kept_samples_read_back() {
        let mut r = Report::new("login");
        r.keep_samples()
            .figure("logins", 2usize)
            .figure("note", "q\"\\\n")
            .latency("total", ms_list(&[3, 1]));
        let j = Json::parse(&r.to_json()).expect("parses");
        assert_eq!(j.get("logins").and_then(Json::as_f64), Some(2.0));
        assert_eq!(j.get("note").and_then(Json::as_str), Some("q\"\\\n"));
        assert_eq!(
            j.get("samples").and_then(|s| s.get("total")),
            Some(&Json::Array(vec![Json::Number(3e6), Json::Number(1e6)]))
        );
        assert_eq!(
            j.get("total")
                .and_then(|t| t.get("p50_ms"))
                .and_then(Json::as_f64),
            Some(1.0)
        );
        let plain = Report::new("x").to_json();
        assert!(!plain.contains("samples"));
    }

    #[test]
    fn json_parser_rejects_garbage() {
        assert!(Json::parse("{\"a\":1").is_err());
        assert!(Json::parse("{\"a\":1} x").is_err());
        assert!(Json::parse("[1,,2]").is_err());
        assert_eq!(
            Json::parse(" {\"a\":[true,false,null,-1.5e3],\"b\":{}} ").expect("parses"),
            Json::Object(vec![
                (
                    "a".into(),
                    Json::Array(vec![
                        Json::Bool(true),
                        Json::Bool(false),
                        Json::Null,
                        Json::Number(-1500.0)
                    ])
                ),
                ("b".into(), Json::Object(vec![])),
            ])
        );
    }

    #[test]
    fn json_has_no_nan() {
        let mut r = Report::new("x");
        r.figure("rate", f64::NAN);
        assert_eq!(r.to_json(), "{\"scenario\":\"x\",\"rate\":null}");
    }
}
