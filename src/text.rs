//! Text from outside (a host's records and output, a plan file, an inventory, a plugin) made
//! safe to show: the one place where a value that reaches a terminal, an error report or a
//! JSON line loses its power to draw. It lives low in the house so that the transport and
//! the parsers of host data can escape a value when it enters an error message, before
//! miette colours the report, as well as `ui` when it prints.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` safe to print on a terminal: every control character but newline and tab (C0,
/// DEL, C1, and the bidirectional overrides that reorder what is shown) is written as a
/// visible escape such as `\x1b` or `\u{202e}`, so that none can clear the screen, move the
/// cursor, retitle the terminal or overwrite a line with `\r`.
pub fn printable(text: &str) -> Cow<'_, str> {
    escape(text, Keep::LineBreaks)
}

/// [`printable`] for a value that must stay on one line (a recorded command, a user, a
/// result, a pending mark, a lock holder, a service name): line breaks and tabs are shown
/// escaped too, so that no value can print a line of its own (a forged generation in
/// `history`, a forged "no changes" in `plan`).
pub fn one_line(text: &str) -> Cow<'_, str> {
    escape(text, Keep::Nothing)
}

/// [`printable`] for a report that miette has already coloured: the colour sequences
/// (`ESC [ digits ; ... m`, which only set colours and weights) are kept, every other
/// control character is escaped. The values from outside in a report were escaped when
/// they entered it ([`one_line`], [`printable`]), so the colours kept are miette's own.
pub fn printable_report(text: &str) -> Cow<'_, str> {
    escape(text, Keep::Colors)
}

/// What [`escape`] leaves as it is besides plain text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    Nothing,
    LineBreaks,
    /// Line breaks, tabs and colour sequences.
    Colors,
}

fn escape(text: &str, keep: Keep) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        let layout = c == '\n' || c == '\t';
        (c.is_control() && !(layout && keep != Keep::Nothing)) || is_bidi_control(c)
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if keep == Keep::Colors
            && let Some(len) = color_sequence_len(rest)
        {
            out.push_str(&rest[..len]);
            rest = &rest[len..];
            continue;
        }
        match c {
            _ if !unsafe_char(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            _ if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
        rest = &rest[c.len_utf8()..];
    }
    Cow::Owned(out)
}

/// The length of the SGR (colour) sequence `text` starts with, if it starts with one.
fn color_sequence_len(text: &str) -> Option<usize> {
    let params = text.strip_prefix("\x1b[")?;
    let end = params.find(|c: char| !(c.is_ascii_digit() || c == ';'))?;
    params[end..].starts_with('m').then_some(2 + end + 1)
}

/// The Unicode controls that reorder text on display ("Trojan Source").
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Whether a JSON string must carry `c` as a `\u` escape beyond what JSON requires (C0,
/// which serde_json escapes): DEL, C1 and the bidirectional controls, which a terminal or
/// a log viewer showing the line would otherwise act on.
fn json_escaped(c: char) -> bool {
    c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c) || is_bidi_control(c)
}

/// serde_json's compact output, with [`json_escaped`] characters written as `\uXXXX`.
struct SafeJson;

impl serde_json::ser::Formatter for SafeJson {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (index, c) in fragment.char_indices() {
            if json_escaped(c) {
                writer.write_all(&fragment.as_bytes()[start..index])?;
                write!(writer, "\\u{:04x}", c as u32)?;
                start = index + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// `value` as one line of JSON in which no string holds a raw control character (see
/// [`json_escaped`]): what every `--json` output prints.
pub fn json_line<T: serde::Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, SafeJson);
    value
        .serialize(&mut serializer)
        .expect("values of synprov's own types serialise");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// The last non-empty line of a command's output.
pub fn last_line(output: &str) -> &str {
    output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screen_clearing_and_carriage_returns_are_shown_escaped() {
        assert_eq!(
            printable("name\x1b[2J\rfake ok\u{9b}1m\u{202e}\x7f"),
            "name\\x1b[2J\\x0dfake ok\\x9b1m\\u{202e}\\x7f"
        );
    }

    #[test]
    fn newlines_tabs_and_plain_text_pass_unchanged() {
        let text = "a\tb\nc é ✓";
        assert!(matches!(printable(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn one_line_shows_line_breaks_and_tabs_escaped() {
        assert_eq!(
            one_line("apply\n  7  2026-12-07 apply ok\tx\r\x1b[1m"),
            "apply\\n  7  2026-12-07 apply ok\\tx\\x0d\\x1b[1m"
        );
        assert!(matches!(one_line("plain é"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_report_keeps_its_colours_but_not_other_sequences() {
        assert_eq!(
            printable_report("\x1b[31m×\x1b[0m bad \x1b[2J\x1b]0;title\x07 \x1b[1;38;5;9m!"),
            "\x1b[31m×\x1b[0m bad \\x1b[2J\\x1b]0;title\\x07 \x1b[1;38;5;9m!"
        );
    }

    #[test]
    fn json_lines_escape_del_c1_and_bidirectional_controls() {
        let line = json_line(&serde_json::json!({"t": "a\x1b\x7f\u{85}\u{9b}\u{202e}\u{2066}é\n"}));
        assert_eq!(
            line,
            "{\"t\":\"a\\u001b\\u007f\\u0085\\u009b\\u202e\\u2066é\\n\"}"
        );
        assert!(!line.chars().any(|c| c.is_control() || is_bidi_control(c)));
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["t"], "a\x1b\x7f\u{85}\u{9b}\u{202e}\u{2066}é\n");
    }
}
