//! A Prometheus text exposition parser, strict enough that a malformed line fails the test
//! instead of silently missing a series.

use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, k: &str) -> &str {
        self.labels.get(k).map(String::as_str).unwrap_or("")
    }

    fn matches(&self, name: &str, want: &[(&str, &str)]) -> bool {
        self.name == name
            && want
                .iter()
                .all(|(k, v)| self.labels.get(*k).map(String::as_str) == Some(*v))
    }
}

/// A parsed scrape, with its text for failure messages.
#[derive(Debug)]
pub struct Metrics {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_sample(l).unwrap_or_else(|e| panic!("bad exposition line {l:?}: {e}\n{text}")))
            .collect();
        Metrics {
            text: text.to_string(),
            samples,
        }
    }

    /// Samples of `name` that carry at least these labels.
    pub fn all(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.matches(name, labels)).collect()
    }

    /// The value of the only sample of `name` with these labels, if any (two is a failure).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let all = self.all(name, labels);
        assert!(
            all.len() <= 1,
            "{name}{labels:?} matches {} series:\n{}",
            all.len(),
            self.text
        );
        all.first().map(|s| s.value)
    }

    #[track_caller]
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in\n{}", self.text))
    }

    /// Every series naming this connector.
    pub fn of_connector(&self, connector: &str) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.label("connector") == connector)
            .collect()
    }

    /// `mailflow_probes_total` of a connector, 0 before its first probe so waits can compare.
    pub fn probes(&self, connector: &str) -> f64 {
        self.get("mailflow_probes_total", &[("connector", connector)])
            .unwrap_or(0.0)
    }

    /// One series of the `mailflow_connector_status` state set.
    pub fn status(&self, connector: &str, code: &str) -> Option<f64> {
        self.get("mailflow_connector_status", &[("connector", connector), ("code", code)])
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let consumed;
        loop {
            // Skip separators.
            while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
                chars.next();
            }
            match chars.peek() {
                None => return Err("unterminated label set".into()),
                Some((i, '}')) => {
                    consumed = i + 1;
                    break;
                }
                Some(_) => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad label name {key:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key}: value not quoted"));
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        other => return Err(format!("bad escape {other:?} in label {key}")),
                    },
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!("label {key}: unterminated value"));
            }
            if labels.insert(key.clone(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
        }
        rest = &r[consumed..];
    }
    let mut fields = rest.split_whitespace();
    let v = fields.next().ok_or("no value")?;
    let value = match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}
