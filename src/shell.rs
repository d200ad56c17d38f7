//! Shell command lines and scripts for hosts, built so that a value can never become syntax.
//!
//! Quoting by construction, not by discipline (Kamal's command builders are the model):
//! - a [`Command`] is a program (a `&'static str`: never a value) and its arguments, each
//!   rendered as exactly one shell word;
//! - a [`Script`] is made only of static text written in this crate and values each
//!   rendered as one word, through the [`sh!`](crate::sh) macro, whose template must be a
//!   string literal: a hole `{}` in it takes a value, quoted; there is no other way in.
//!
//! So the only text a host's shell parses as syntax is text synprov's source spells out.
//! A nested shell (`sh -c`) gets its script as one quoted word, and `sudo -n` is a prefix of
//! an argument list, never a string glued to another.

use std::fmt;

/// `text` as exactly one shell word: bare when every character is one no shell gives a
/// meaning to (so command lines stay readable), otherwise single-quoted, with each `'`
/// written as `'\''`. `=` and `~` are never bare: a bare `a=b` first on a line is an
/// assignment, a bare `~` expands to a home directory.
pub fn quote(text: &str) -> String {
    let bare = |c: char| c.is_ascii_alphanumeric() || "_-./:@%+,".contains(c);
    if !text.is_empty() && text.chars().all(bare) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// What can fill a hole of [`sh!`](crate::sh): text is always data (one quoted word); only
/// the types of this module, themselves built from quoted words, are spliced as syntax.
pub trait Fragment {
    fn write_to(&self, out: &mut String);
}

impl Fragment for str {
    fn write_to(&self, out: &mut String) {
        out.push_str(&quote(self));
    }
}

impl Fragment for String {
    fn write_to(&self, out: &mut String) {
        self.as_str().write_to(out);
    }
}

impl<T: Fragment + ?Sized> Fragment for &T {
    fn write_to(&self, out: &mut String) {
        (**self).write_to(out);
    }
}

/// A file mode, written in octal as `chmod` and `mkdir -m` take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl Fragment for Mode {
    fn write_to(&self, out: &mut String) {
        out.push_str(&format!("{:o}", self.0 & 0o7777));
    }
}

impl Fragment for Script {
    fn write_to(&self, out: &mut String) {
        out.push_str(&self.0);
    }
}

impl Fragment for Command {
    fn write_to(&self, out: &mut String) {
        out.push_str(&self.line());
    }
}

/// A program and its arguments, rendered as a command line of quoted words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    program: &'static str,
    args: Vec<String>,
}

impl Command {
    /// `program` is static: a program name is never a value from outside.
    pub fn new(program: &'static str) -> Command {
        Command {
            program,
            args: Vec::new(),
        }
    }

    /// `sh -c SCRIPT`: the script is one word of the outer command line.
    pub fn shell(script: &Script) -> Command {
        Command::new("sh").arg("-c").arg(script.text())
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Command {
        self.args.push(arg.into());
        self
    }

    /// The same command through `sudo -n`: never prompts, fails when sudo would.
    pub fn sudo(self) -> Command {
        let mut args = vec!["-n".to_string(), self.program.to_string()];
        args.extend(self.args);
        Command {
            program: "sudo",
            args,
        }
    }

    /// The command line: every word quoted.
    pub fn line(&self) -> String {
        let mut line = quote(self.program);
        for arg in &self.args {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        line
    }
}

/// Shell text made of static syntax and quoted values only (see the module's doc): what a
/// host runs with `sh -s`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script(String);

impl Script {
    pub fn new() -> Script {
        Script::default()
    }

    /// Appends `more`.
    pub fn push(&mut self, more: Script) {
        self.0.push_str(&more.0);
    }

    pub fn text(&self) -> &str {
        &self.0
    }

    /// The script's bytes, as sent on standard input.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The number of `{}` holes in `template`, for [`sh!`](crate::sh)'s compile-time check.
pub const fn holes(template: &str) -> usize {
    let bytes = template.as_bytes();
    let (mut i, mut count) = (0, 0);
    while i + 1 < bytes.len() {
        if bytes[i] == b'{' && bytes[i + 1] == b'}' {
            count += 1;
            i += 1;
        }
        i += 1;
    }
    count
}

/// `template` with its holes filled by `values` in order; use [`sh!`](crate::sh), which
/// checks their number when compiling.
pub fn fill(template: &'static str, values: &[&dyn Fragment]) -> Script {
    let mut out = String::with_capacity(template.len());
    let mut values = values.iter();
    let mut pieces = template.split("{}");
    if let Some(first) = pieces.next() {
        out.push_str(first);
    }
    for piece in pieces {
        if let Some(value) = values.next() {
            value.write_to(&mut out);
        }
        out.push_str(piece);
    }
    Script(out)
}

/// A [`Script`] from a literal template whose `{}` holes take values: text as one quoted
/// word each, [`Command`]s as the command lines they already are, [`Script`]s as the
/// text they are (made the same way), [`Mode`]s in octal. A template with more or fewer holes than values does not compile.
///
/// ```text
/// sh!("mkdir -p -- {} && echo done\n", "/opt/it's")  =>  mkdir -p -- '/opt/it'\''s' && echo done
/// ```
#[macro_export]
macro_rules! sh {
    (@hole $value:expr) => {
        ()
    };
    ($template:literal $(, $value:expr)* $(,)?) => {{
        const _: () = assert!(
            $crate::shell::holes($template) == <[()]>::len(&[$($crate::sh!(@hole $value)),*]),
            "sh!: the template's holes and the values given differ in number"
        );
        $crate::shell::fill($template, &[$(&$value as &dyn $crate::shell::Fragment),*])
    }};
}

/// Creates `path` and each missing directory above it with `mode`, whatever the umask
/// (`mkdir -m` is exact, and each level is named so none is made as an intermediate with
/// the umask's mode). Existing directories are left as they are.
pub fn make_dirs(path: &str, mode: Mode) -> Script {
    let mut levels = Vec::new();
    let mut current = String::new();
    if path.starts_with('/') {
        current.push('/');
    }
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if !current.is_empty() && !current.ends_with('/') {
            current.push('/');
        }
        current.push_str(part);
        levels.push(current.clone());
    }
    if levels.is_empty() {
        return Script::new();
    }
    let mut s = sh!("mkdir -p -m {} --", mode);
    for level in &levels {
        s.push(sh!(" {}", level));
    }
    s.push(sh!("\n"));
    s
}

/// `printf '%s\0' WORDS...`: each word followed by a NUL, so that any word (a line break in
/// it included) reads back as itself, e.g. with `xargs -0`; with no word, prints nothing.
/// `printf` is a shell builtin: no limit on the number of words.
pub fn print_nul_terminated(words: &[&str]) -> Script {
    if words.is_empty() {
        return sh!(":");
    }
    let mut s = sh!("printf '%s\\0'");
    for word in words {
        s.push(sh!(" {}", word));
    }
    s
}

/// The delimiter of [`with_base64_input`]'s here-documents.
const END: &str = "SYNPROV_EOF";

/// `command` with `data` on its standard input through a here-document, base64-encoded in
/// 76-column lines: the only way raw data enters a script. Safe for any bytes: the base64
/// alphabet (`A-Z a-z 0-9 + / =`) has no `_`, so no line of the body can be the delimiter
/// `SYNPROV_EOF`, and the quoted delimiter makes the shell expand nothing in the body.
/// `command` decodes it (`base64 -d`).
pub fn with_base64_input(command: Script, data: &[u8]) -> Script {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = command.0;
    out.push_str(&format!(" <<'{END}'\n"));
    for line in encoded.as_bytes().chunks(76) {
        // Base64 is ASCII: each chunk is whole characters.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(END);
    out.push('\n');
    Script(out)
}

/// Runs `script` with this machine's `sh`, as a host would, and returns its standard
/// output; fails the test, with the script's errors, when it fails. For tests of scripts
/// that need no more than a POSIX shell and a directory.
#[cfg(test)]
pub fn run_here(script: &Script) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script.text())
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `sh` prints for `printf '%s' WORD`.
    fn through_sh(word: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {word}"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn quoted_words_survive_the_shell_unchanged() {
        for hostile in [
            "it's $HOME; rm -rf /",
            "$(touch /tmp/x)",
            "`id`",
            "a\nb",
            "-rf",
            "a=b",
            "~",
            "",
            "'",
            "\\",
            "*",
        ] {
            assert_eq!(through_sh(&quote(hostile)), hostile);
        }
    }

    #[test]
    fn plain_words_stay_bare_and_others_are_quoted_exactly() {
        assert_eq!(quote("/opt/synapse-1/a.yaml"), "/opt/synapse-1/a.yaml");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("a;b"), "'a;b'");
        assert_eq!(quote("$(x)"), "'$(x)'");
        assert_eq!(quote("a\nb"), "'a\nb'");
        assert_eq!(quote("a=b"), "'a=b'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn a_command_quotes_each_argument_and_sudo_prefixes_the_argument_list() {
        let command = Command::new("flock")
            .arg("-n")
            .arg("/opt/x;touch${IFS}/tmp/pwned;")
            .arg("-v");
        assert_eq!(
            command.line(),
            "flock -n '/opt/x;touch${IFS}/tmp/pwned;' -v"
        );
        assert_eq!(
            command.sudo().line(),
            "sudo -n flock -n '/opt/x;touch${IFS}/tmp/pwned;' -v"
        );
    }

    #[test]
    fn a_nested_shell_gets_its_script_as_one_word() {
        let script = sh!("cat > {}\n", "/tmp/a'b");
        assert_eq!(
            Command::shell(&script).line(),
            "sh -c 'cat > '\\''/tmp/a'\\''\\'\\'''\\''b'\\''\n'"
        );
    }

    #[test]
    fn holes_take_words_commands_and_modes() {
        let script = sh!(
            "{} {} {}",
            "a b",
            Command::new("docker").arg("load"),
            Mode(0o640)
        );
        assert_eq!(script.text(), "'a b' docker load 640");
        assert_eq!(holes("{ a; } {} ${x} {}"), 2);
    }

    #[test]
    fn base64_input_cannot_end_its_here_document_early() {
        let data = b"SYNPROV_EOF\n$(touch x)\n'\xff";
        let script = with_base64_input(sh!("base64 -d > {}", "out put"), data);
        assert_eq!(
            script.text(),
            "base64 -d > 'out put' <<'SYNPROV_EOF'\nU1lOUFJPVl9FT0YKJCh0b3VjaCB4KQon/w==\nSYNPROV_EOF\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(script.text())
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(std::fs::read(dir.path().join("out put")).unwrap(), data);
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn words_printed_nul_terminated_read_back_exactly() {
        let words = ["a\nb", "-n", "'$(x)'", ""];
        let script = print_nul_terminated(&words);
        assert_eq!(
            script.text(),
            "printf '%s\\0' 'a\nb' -n ''\\''$(x)'\\''' ''"
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script.text())
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"a\nb\0-n\0'$(x)'\0\0");
        assert_eq!(print_nul_terminated(&[]).text(), ":");
    }

    #[test]
    fn make_dirs_names_every_level() {
        assert_eq!(
            make_dirs("/opt/x;y//z", Mode(0o755)).text(),
            "mkdir -p -m 755 -- /opt '/opt/x;y' '/opt/x;y/z'\n"
        );
        assert_eq!(
            make_dirs("-a/b", Mode(0o700)).text(),
            "mkdir -p -m 700 -- -a -a/b\n"
        );
    }
}
