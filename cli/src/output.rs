//! Writing results to stdout: JSON Lines with `--json`, lines for people without, and the
//! helpers that make names and texts from other people safe to print on a terminal.

use std::io::{self, Write};

use kith_protocol::text::isolate_for_display;
use serde_json::Value;

use crate::error::CliError;

/// Where a command writes its results, and in which form.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    json: bool,
}

impl Out {
    pub fn new(json: bool) -> Out {
        Out { json }
    }

    /// True when results are printed as JSON.
    pub fn is_json(self) -> bool {
        self.json
    }

    /// Writes one line to stdout and flushes it, so `kith watch | ...` sees each line at once.
    pub fn line(self, line: &str) -> Result<(), CliError> {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .map_err(CliError::from_output)
    }

    /// Writes one JSON value on one line.
    pub fn json_line(self, value: &Value) -> Result<(), CliError> {
        self.line(&value.to_string())
    }

    /// Prints a single result: the JSON object with `--json`, else the lines `human` makes.
    pub fn result(
        self,
        value: &Value,
        human: impl FnOnce(&Value) -> String,
    ) -> Result<(), CliError> {
        if self.json {
            self.json_line(value)
        } else {
            self.line(&human(value))
        }
    }

    /// Prints a list result: JSON Lines with `--json`, else one line (or block) per item from
    /// `human`, or `empty` when there are none.
    pub fn list(
        self,
        value: &Value,
        mut human: impl FnMut(&Value) -> String,
        empty: &str,
    ) -> Result<(), CliError> {
        let items = items(value);
        if self.json {
            return items.iter().try_for_each(|item| self.json_line(item));
        }
        if items.is_empty() {
            return self.line(empty);
        }
        items.iter().try_for_each(|item| self.line(&human(item)))
    }
}

/// The items of a list result: the array's elements (anything else counts as one item).
pub fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        other => std::slice::from_ref(other),
    }
}

/// A string field of a JSON object, if present and a string.
pub fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// A string field for people: the field, or `-` when it is missing or null.
pub fn str_or_dash<'a>(value: &'a Value, key: &str) -> &'a str {
    str_field(value, key).unwrap_or("-")
}

/// A name (or any one-line string from elsewhere) made safe to print among other text:
/// control characters become U+FFFD, and bidirectional or invisible characters are isolated.
pub fn shown_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    isolate_for_display(&cleaned)
}

/// A message text made safe to print: line breaks are kept (continuation lines are indented
/// by `indent` spaces, a CR before a LF is dropped), tabs become spaces, other control characters such as terminal escapes
/// become U+FFFD, and each line holding bidirectional or invisible characters is isolated.
pub fn shown_text(text: &str, indent: usize) -> String {
    let separator = format!("\n{}", " ".repeat(indent));
    text.split('\n')
        .map(|line| shown_name(&line.trim_end_matches('\r').replace('\t', "    ")))
        .collect::<Vec<_>>()
        .join(&separator)
}

/// "1 message" / "3 messages".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_cannot_reach_the_terminal() {
        let shown = shown_text("hi \u{1b}[2J there", 0);
        assert!(!shown.contains('\u{1b}'));
        let shown = shown_name("a\nb");
        assert!(!shown.contains('\n'));
    }

    #[test]
    fn bidi_is_isolated() {
        let shown = shown_name("evil\u{202e}gnp.exe");
        assert!(shown.starts_with('\u{2068}') && shown.ends_with('\u{2069}'));
        assert!(!shown.contains('\u{202e}'));
        assert_eq!(shown_name("bob"), "bob");
        assert_eq!(shown_text("hello there", 4), "hello there");
    }

    #[test]
    fn continuation_lines_are_indented() {
        assert_eq!(shown_text("one\ntwo", 2), "one\n  two");
    }
}
