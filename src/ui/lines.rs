//! Text from a host on its way to a terminal, line by line, its control characters shown
//! escaped (see [`super::printable`]): a log line holds whatever a remote user or server
//! sent, and must not be able to move the cursor or retitle the terminal.

use std::io::{self, Write};

/// A line longer than this is shown in pieces rather than held back.
const LONGEST: usize = 64 * 1024;

/// Writes each complete line to `inner` through [`super::printable`]; the bytes of a line
/// not yet ended wait for its end (or [`PrintableLines::finish`]), so that a character
/// split between two reads is decoded whole.
pub struct PrintableLines<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> PrintableLines<W> {
    pub fn new(inner: W) -> PrintableLines<W> {
        PrintableLines {
            inner,
            pending: Vec::new(),
        }
    }

    /// Writes what is left of an unfinished last line.
    pub fn finish(mut self) -> io::Result<()> {
        let rest = std::mem::take(&mut self.pending);
        self.emit(&rest)?;
        self.inner.flush()
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        let text = String::from_utf8_lossy(bytes);
        self.inner.write_all(super::printable(&text).as_bytes())
    }
}

impl<W: Write> Write for PrintableLines<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        let end = match self.pending.iter().rposition(|&b| b == b'\n') {
            Some(newline) => newline + 1,
            None if self.pending.len() >= LONGEST => self.pending.len(),
            None => return Ok(buf.len()),
        };
        let lines: Vec<u8> = self.pending.drain(..end).collect();
        self.emit(&lines)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_split_characters_decoded_whole() {
        let mut out = Vec::new();
        let mut lines = PrintableLines::new(&mut out);
        lines.write_all(b"ok \x1b]0;pwned\x07 line\nna").unwrap();
        lines.write_all(&"\u{e9}".as_bytes()[..1]).unwrap();
        lines.write_all(&"\u{e9}".as_bytes()[1..]).unwrap();
        lines.write_all(b"me\r\nlast").unwrap();
        lines.finish().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ok \\x1b]0;pwned\\x07 line\nna\u{e9}me\\x0d\nlast"
        );
    }
}
