//! Just enough of the Prometheus text format (0.0.4) to read a scrape:
//! samples with their labels and values; comments and timestamps ignored.

pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

pub struct Scrape(Vec<Sample>);

impl Scrape {
    /// Parses a page; lines that are not well-formed samples are skipped,
    /// so one odd line cannot hide the rest.
    pub fn parse(text: &str) -> Scrape {
        Scrape(text.lines().filter(|l| !l.starts_with('#')).filter_map(sample).collect())
    }

    fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> {
        self.0.iter().filter(move |s| s.name == name)
    }

    /// The first series of `name` (its labels not considered).
    pub fn value(&self, name: &str) -> Option<f64> {
        self.series(name).next().map(|s| s.value)
    }

    /// The series of `name` by the value of their `label`, in page order.
    pub fn by(&self, name: &str, label: &str) -> Vec<(String, f64)> {
        self.series(name).filter_map(|s| Some((s.label(label)?.to_string(), s.value))).collect()
    }

    /// A label of the first series of `name` (e.g. the build's version).
    pub fn label<'a>(&'a self, name: &'a str, label: &str) -> Option<&'a str> {
        self.series(name).next()?.label(label)
    }
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// `name{k="v",…} value [timestamp]`
fn sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    let name_end = line.find(['{', ' ', '\t'])?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once('=')?;
            let (value, after) = quoted(after.strip_prefix('"')?)?;
            labels.push((key.trim().to_string(), value));
            rest = after;
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample { name: name.to_string(), labels, value })
}

/// An escaped label value up to its closing quote, and what follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_labels_escapes_and_special_values() {
        let page = "# HELP x y\n# TYPE x counter\n\
            crewshipd_llm_calls_total{hostname=\"h\",provider=\"a \\\"q\\\" \\\\ b\\nc\"} 3\n\
            crewshipd_uptime_seconds{hostname=\"h\"} 12.5 1700000000\n\
            weird line\n\
            bare 1e3\n\
            inf{a=\"b\"} +Inf\n";
        let s = Scrape::parse(page);
        assert_eq!(s.by("crewshipd_llm_calls_total", "provider"), vec![("a \"q\" \\ b\nc".to_string(), 3.0)]);
        assert_eq!(s.value("crewshipd_uptime_seconds"), Some(12.5));
        assert_eq!(s.value("bare"), Some(1000.0));
        assert_eq!(s.value("inf"), Some(f64::INFINITY));
        assert_eq!(s.label("crewshipd_uptime_seconds", "hostname"), Some("h"));
        assert_eq!(s.value("weird"), None);
    }
}
