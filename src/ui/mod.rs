//! What the user sees: diffs and plan summaries. The engine never prints; commands hand
//! its results to this module.

pub mod diff;
pub mod lines;
pub mod plan;
pub mod progress;
pub mod timings;

use std::borrow::Cow;
use std::fmt::Write;

/// Whether to colour output: a terminal, and no NO_COLOR.
pub fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout())
}

/// `text` safe to print on a terminal: every control character but newline and tab (C0,
/// DEL, C1, and the bidirectional overrides that reorder what is shown) is written as a
/// visible escape such as `\x1b` or `\u{202e}`. Values from an inventory, a plugin or a
/// host pass through here before they are printed, so that none can clear the screen,
/// move the cursor, retitle the terminal or overwrite a line with `\r`.
pub fn printable(text: &str) -> Cow<'_, str> {
    escape_controls(text, false, false)
}

/// [`printable`] for a value shown on one line (a name, a path, a hash), with its line
/// breaks escaped too (`\x0a`): a value from outside cannot print a line of its own, such
/// as a forged "no changes".
pub fn printable_line(text: &str) -> Cow<'_, str> {
    escape_controls(text, false, true)
}

/// [`printable`] for a report that miette has already coloured: the colour sequences
/// (`ESC [ digits ; ... m`, which only set colours and weights) are kept, every other
/// control character is escaped. A hostile value can at worst change a colour.
pub fn printable_report(text: &str) -> Cow<'_, str> {
    escape_controls(text, true, false)
}

fn escape_controls(text: &str, keep_colors: bool, one_line: bool) -> Cow<'_, str> {
    let unsafe_char =
        |c: char| (c != '\n' || one_line) && c != '\t' && (c.is_control() || is_bidi_control(c));
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if keep_colors && let Some(len) = color_sequence_len(rest) {
            out.push_str(&rest[..len]);
            rest = &rest[len..];
            continue;
        }
        if !unsafe_char(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
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
    fn a_one_line_value_shows_its_line_breaks_escaped() {
        assert_eq!(
            printable_line("hs1\nhost hs2: no changes\r\x1b[1m"),
            "hs1\\x0ahost hs2: no changes\\x0d\\x1b[1m"
        );
    }

    #[test]
    fn newlines_tabs_and_plain_text_pass_unchanged() {
        let text = "a\tb\nc é ✓";
        assert!(matches!(printable(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn a_report_keeps_its_colours_but_not_other_sequences() {
        assert_eq!(
            printable_report("\x1b[31m×\x1b[0m bad \x1b[2J\x1b]0;title\x07 \x1b[1;38;5;9m!"),
            "\x1b[31m×\x1b[0m bad \\x1b[2J\\x1b]0;title\\x07 \x1b[1;38;5;9m!"
        );
    }
}
