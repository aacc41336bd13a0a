//! Human output: lists as aligned columns, single records as field/value
//! pairs. `--json` bypasses all of this and prints the server's JSON.

use std::io::Write;

use comfy_table::{Table, presets};
use serde_json::Value;

use super::error::{CliError, Result};

/// A list column: its header and the JSON field it shows.
pub type Columns = &'static [(&'static str, &'static str)];

/// How a reply reads as a table.
pub enum View {
    /// One object: a row per field.
    Record,
    /// The array under `key` (`items`, `rows`), one row per element.
    Rows(&'static str, Columns),
}

/// List cells are cut to this many characters so one long task or summary
/// cannot push every other column off the screen; `get` shows them whole.
const CELL_MAX: usize = 60;

pub fn show(json: bool, body: &Value, view: View) -> Result<()> {
    if json {
        let text = serde_json::to_string_pretty(body).expect("a JSON value serialises");
        return print(&format!("{text}\n"));
    }
    let table = match view {
        View::Record => record(body),
        View::Rows(key, columns) => rows(body[key].as_array().map(Vec::as_slice).unwrap_or_default(), columns),
    };
    print(&format!("{table}\n"))
}

/// Writes to stdout; a closed pipe ends the command instead of panicking
/// as `println!` would.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => CliError::OutputClosed,
        _ => CliError::Failed(format!("cannot write output: {e}")),
    })
}

/// Columns aligned by spaces, no borders: easy to read and to grep.
fn table() -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t
}

fn finish(mut t: Table) -> String {
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    t.trim_fmt()
}

fn rows(items: &[Value], columns: Columns) -> String {
    let mut t = table();
    t.set_header(columns.iter().map(|(header, _)| *header));
    for item in items {
        t.add_row(columns.iter().map(|(_, field)| short(&cell(&item[*field]), CELL_MAX)));
    }
    finish(t)
}

fn record(body: &Value) -> String {
    let mut t = table();
    if let Value::Object(fields) = body {
        for (k, v) in fields {
            t.add_row([k.clone(), cell(v)]);
        }
    }
    finish(t)
}

/// A JSON value as one cell: strings bare, null as `-`, string arrays (an
/// agent's argv) as shell words, anything else as compact JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(shell_word).collect::<Vec<_>>().join(" ")
        }
        other => other.to_string(),
    }
}

fn shell_word(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain { s.to_string() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

/// One line of at most `max` characters.
pub fn short(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cells_read_like_the_values() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!(["sh", "-c", "echo 'hi'; exit 0"])), r#"sh -c 'echo '\''hi'\''; exit 0'"#);
        assert_eq!(cell(&json!({"K": "v"})), r#"{"K":"v"}"#);
        assert_eq!(cell(&json!(0.0105)), "0.0105");
    }

    #[test]
    fn long_cells_are_cut_to_one_line() {
        assert_eq!(short("a\nb  c", 10), "a b c");
        assert_eq!(short("abcdefghij", 5), "abcd…");
    }

    #[test]
    fn lists_align_under_headers() {
        let items = [json!({"slug": "alpha", "n": 2}), json!({"slug": "b", "n": null})];
        assert_eq!(rows(&items, &[("SLUG", "slug"), ("N", "n")]), "SLUG   N\nalpha  2\nb      -");
    }
}
