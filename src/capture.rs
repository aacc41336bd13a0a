//! A run's captured output, bounded, keeping the tail: what the process
//! runner and container execs both fill.

use std::collections::VecDeque;

/// How much of stdout's tail becomes the assignment's `result_summary`
/// (and a pipeline step's output).
pub const SUMMARY_BYTES: usize = 4096;

/// How much of stderr's tail is kept for the last line a failed run's
/// `error_message` quotes.
const STDERR_TAIL_BYTES: usize = 1024;
/// The longest quoted stderr line, in characters.
const LAST_LINE_CHARS: usize = 300;

#[derive(Debug)]
pub struct Output {
    limit: usize,
    combined: VecDeque<u8>,
    stdout_tail: VecDeque<u8>,
    stderr_tail: VecDeque<u8>,
    dropped: u64,
}

fn push_bounded(buf: &mut VecDeque<u8>, bytes: &[u8], limit: usize) -> u64 {
    buf.extend(bytes);
    let excess = buf.len().saturating_sub(limit);
    buf.drain(..excess);
    excess as u64
}

/// Lossy UTF-8 of a byte tail that may start mid-character, NUL bytes
/// shown as U+FFFD too: PostgreSQL text cannot hold them, and the output
/// reads the same on either backend.
fn text(buf: &VecDeque<u8>) -> String {
    let (a, b) = buf.as_slices();
    let mut bytes = Vec::with_capacity(buf.len());
    bytes.extend_from_slice(a);
    bytes.extend_from_slice(b);
    let start = bytes.iter().position(|b| (*b as i8) >= -0x40).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).replace('\0', "\u{fffd}")
}

impl Output {
    pub fn new(limit: usize) -> Output {
        Output {
            limit,
            combined: VecDeque::new(),
            stdout_tail: VecDeque::new(),
            stderr_tail: VecDeque::new(),
            dropped: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8], is_stdout: bool) {
        self.dropped += push_bounded(&mut self.combined, bytes, self.limit);
        if is_stdout {
            push_bounded(&mut self.stdout_tail, bytes, SUMMARY_BYTES);
        } else {
            push_bounded(&mut self.stderr_tail, bytes, STDERR_TAIL_BYTES);
        }
    }

    /// Everything kept, stdout and stderr interleaved as they arrived.
    pub fn text(&self) -> String {
        if self.dropped == 0 {
            text(&self.combined)
        } else {
            format!("[… {} earlier bytes dropped]\n{}", self.dropped, text(&self.combined))
        }
    }

    /// The tail of stdout, trimmed.
    pub fn summary(&self) -> String {
        text(&self.stdout_tail).trim().to_string()
    }

    /// The last non-blank line the run wrote to stderr, trimmed and cut to
    /// `LAST_LINE_CHARS`: what a failure's message quotes.
    pub fn last_stderr_line(&self) -> Option<String> {
        let tail = text(&self.stderr_tail);
        let line = tail.lines().map(str::trim).rfind(|l| !l.is_empty())?;
        Some(match line.char_indices().nth(LAST_LINE_CHARS) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => line.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_tail() {
        let mut o = Output::new(10);
        o.push(b"0123456789", true);
        o.push(b"abc", false);
        assert_eq!(o.text(), "[… 3 earlier bytes dropped]\n3456789abc");
        assert_eq!(o.summary(), "0123456789");
    }

    #[test]
    fn the_last_stderr_line_is_quoted_bounded() {
        let mut o = Output::new(100);
        assert_eq!(o.last_stderr_line(), None);
        o.push(b"out\n", true);
        o.push(b"first\n  Error: no key  \n\n", false);
        assert_eq!(o.last_stderr_line().as_deref(), Some("Error: no key"));
        o.push("x".repeat(5000).as_bytes(), false);
        let long = o.last_stderr_line().unwrap();
        assert_eq!(long.chars().count(), LAST_LINE_CHARS + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn cut_characters_are_skipped() {
        let mut o = Output::new(3);
        o.push("é!é".as_bytes(), true); // c3 a9 21 c3 a9
        assert_eq!(text(&o.combined), "!é");
    }
}
