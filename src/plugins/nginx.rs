//! Nginx locations from plugins, parsed rather than spliced as text.
//!
//! A plugin's location body is read by a tokenizer that follows Nginx's own lexical rules
//! (quotes, backslash escapes, `#` comments to the end of the line, `;`, `{`, `}`), and only
//! simple directives from a short allow-list are kept. What reaches nginx.conf is re-emitted
//! from the tokens, each argument quoted by synprov: a brace hidden in a comment, a second
//! block or a stray `}` never becomes Nginx syntax. Variables (`$name`) are refused: Nginx
//! interpolates them in quoted strings too, and a plugin has no need to reflect a request's
//! headers or proxy to an address a request chooses.

use std::fmt;

/// How a location matches, as Nginx's modifier says. Regex (`~`, `~*`) and named (`@`)
/// locations are not offered: a regex location is tried before every prefix location, so
/// it could take requests from synprov's own prefix routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    /// `location /path`
    Prefix,
    /// `location ^~ /path`: a prefix that stops the regex search.
    PriorityPrefix,
    /// `location = /path`
    Exact,
}

/// A plugin's location, checked: its modifier and URI, and the directives of its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub modifier: Modifier,
    /// An absolute path of plain URI characters.
    pub uri: String,
    pub directives: Vec<Directive>,
}

/// One simple directive: its name and arguments as Nginx reads them (unescaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
}

/// The directives a plugin's location may hold.
pub const DIRECTIVES: [&str; 4] = ["return", "default_type", "add_header", "proxy_pass"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Semicolon,
    BlockStart,
    BlockEnd,
}

/// Splits `text` into tokens as Nginx's `ngx_conf_read_token` does; `$` anywhere outside a
/// comment is refused.
fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            ' ' | '\t' | '\r' => {}
            ';' => tokens.push(Token::Semicolon),
            '{' => tokens.push(Token::BlockStart),
            '}' => tokens.push(Token::BlockEnd),
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '"' | '\'' => {
                let mut word = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("line {line}: a string is not closed")),
                        Some(q) if q == c => break,
                        Some('\\') => unescape(chars.next(), &mut word),
                        Some(other) => {
                            if other == '\n' {
                                line += 1;
                            }
                            word.push(other);
                        }
                    }
                }
                // Nginx wants a space, `;` or `{` right after a closing quote.
                if chars
                    .peek()
                    .is_some_and(|n| !matches!(n, ' ' | '\t' | '\r' | '\n' | ';' | '{'))
                {
                    return Err(format!(
                        "line {line}: a string is followed by `{}` without a space",
                        chars.peek().copied().unwrap_or(' ')
                    ));
                }
                tokens.push(Token::Word(word));
            }
            first => {
                // A word ends at a space, `;` or `{`; a `}` or `#` inside it is part of it,
                // as in Nginx.
                let mut word = String::new();
                let mut next = Some(first);
                while let Some(c) = next {
                    match c {
                        '\\' => unescape(chars.next(), &mut word),
                        other => word.push(other),
                    }
                    next = chars.next_if(|c| !matches!(c, ' ' | '\t' | '\r' | '\n' | ';' | '{'));
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    for token in &tokens {
        if let Token::Word(word) = token {
            if word.contains('$') {
                return Err(format!(
                    "`{word}` holds `$`, which Nginx reads as a variable: write `$` in JSON as \\u0024, or leave it out"
                ));
            }
            if let Some(c) = word
                .chars()
                .find(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
            {
                return Err(format!(
                    "`{}` holds the control character {c:?}",
                    word.escape_debug()
                ));
            }
        }
    }
    Ok(tokens)
}

/// What Nginx makes of a backslash and the character after it: `\"`, `\'` and `\\` are the
/// character, `\t`, `\r` and `\n` the control characters, and any other pair stays as is.
fn unescape(next: Option<char>, word: &mut String) {
    match next {
        Some(c @ ('"' | '\'' | '\\')) => word.push(c),
        Some('t') => word.push('\t'),
        Some('r') => word.push('\r'),
        Some('n') => word.push('\n'),
        Some(other) => {
            word.push('\\');
            word.push(other);
        }
        None => word.push('\\'),
    }
}

impl Location {
    /// Parses what follows `location` (`path`) and the body of the block (`body`), keeping
    /// only allowed directives; `services` are the plugin's own Compose services, the only
    /// hosts `proxy_pass` may name.
    pub fn parse(path: &str, body: &str, services: &[&str]) -> Result<Location, String> {
        let (modifier, uri) = match tokenize(path)?.as_slice() {
            [Token::Word(uri)] => (Modifier::Prefix, uri.clone()),
            [Token::Word(m), Token::Word(uri)] if m == "=" => (Modifier::Exact, uri.clone()),
            [Token::Word(m), Token::Word(uri)] if m == "^~" => {
                (Modifier::PriorityPrefix, uri.clone())
            }
            [Token::Word(m), _] if m.starts_with('~') => {
                return Err("is a regex location: a plugin may use only `/path`, `= /path` and `^~ /path`, which cannot take requests from synprov's routes".into());
            }
            _ => {
                return Err(
                    "is not `/path`, `= /path` or `^~ /path` (one location, no `{`, `}` or `;`)"
                        .into(),
                );
            }
        };
        if !uri.starts_with('/') || !uri.chars().all(is_uri_char) {
            return Err(format!(
                "has the URI {uri:?}: it must be an absolute path of letters, digits and `/._~%!*+,:@-`"
            ));
        }
        let mut directives = Vec::new();
        let mut words = Vec::new();
        for token in tokenize(body)? {
            match token {
                Token::Word(word) => words.push(word),
                Token::Semicolon => {
                    let mut args = std::mem::take(&mut words).into_iter();
                    let name = args.next().ok_or("has an empty directive (a lone `;`)")?;
                    let directive = Directive {
                        name,
                        args: args.collect(),
                    };
                    directive.check(services)?;
                    directives.push(directive);
                }
                Token::BlockStart => {
                    return Err(
                        "has a block (`{`) in its body: only simple directives are allowed".into(),
                    );
                }
                Token::BlockEnd => {
                    return Err(
                        "has a `}` in its body, which would close the location block".into(),
                    );
                }
            }
        }
        if !words.is_empty() {
            return Err(format!(
                "has a directive without its `;`: `{}`",
                words.join(" ")
            ));
        }
        Ok(Location {
            modifier,
            uri,
            directives,
        })
    }

    /// What follows `location` in nginx.conf.
    pub fn matcher(&self) -> String {
        match self.modifier {
            Modifier::Prefix => self.uri.clone(),
            Modifier::PriorityPrefix => format!("^~ {}", self.uri),
            Modifier::Exact => format!("= {}", self.uri),
        }
    }
}

fn is_uri_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/._~%!*+,:@-".contains(c)
}

impl Directive {
    fn check(&self, services: &[&str]) -> Result<(), String> {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let ok = match (self.name.as_str(), args.as_slice()) {
            ("return", [code, ..]) if args.len() <= 2 => code
                .parse::<u16>()
                .is_ok_and(|c| (200..=599).contains(&c) || c == 444),
            ("default_type", [mime]) => {
                let token = |s: &str| {
                    !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "!#&^_.+-".contains(c))
                };
                mime.split_once('/')
                    .is_some_and(|(kind, sub)| token(kind) && token(sub))
            }
            ("add_header", [name, value, rest @ ..]) => {
                !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !value.chars().any(char::is_control)
                    && matches!(rest, [] | ["always"])
            }
            ("proxy_pass", [url]) => proxy_target(url).is_some_and(|host| services.contains(&host)),
            (name, _) if !DIRECTIVES.contains(&name) => {
                return Err(format!(
                    "uses `{name}`, which a plugin's location may not (allowed: {})",
                    DIRECTIVES.join(", ")
                ));
            }
            _ => false,
        };
        if ok {
            return Ok(());
        }
        let usage = match self.name.as_str() {
            "return" => "`return CODE [TEXT];` with a code from 200 to 599 (or 444)",
            "default_type" => "`default_type TYPE/SUBTYPE;`",
            "add_header" => "`add_header NAME VALUE [always];` with a plain header name",
            _ => "`proxy_pass http://SERVICE:PORT[/path];` naming one of the plugin's own services",
        };
        Err(format!(
            "has `{}`: write it as {usage}",
            std::iter::once(self.name.as_str())
                .chain(args)
                .collect::<Vec<_>>()
                .join(" ")
                .escape_debug()
        ))
    }
}

/// The host of `http://HOST:PORT[/path]` when the URL has that plain shape.
fn proxy_target(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let (host, port) = authority.split_once(':')?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    (port_ok && path.chars().all(is_uri_char)).then_some(host)
}

impl fmt::Display for Directive {
    /// The directive as Nginx will read back the same name and arguments: every argument
    /// that is not a plain word is single-quoted, with `\` and `'` escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for arg in &self.args {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._/:*+=,@%~!?&-".contains(c));
            if plain {
                write!(f, " {arg}")?;
                continue;
            }
            f.write_str(" '")?;
            for c in arg.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '\'' => f.write_str("\\'")?,
                    '\n' => f.write_str("\\n")?,
                    '\t' => f.write_str("\\t")?,
                    '\r' => f.write_str("\\r")?,
                    other => write!(f, "{other}")?,
                }
            }
            f.write_str("'")?;
        }
        f.write_str(";")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Location, String> {
        Location::parse("= /x", body, &["bridge"])
    }

    fn words(text: &str) -> Vec<String> {
        tokenize(text)
            .unwrap()
            .into_iter()
            .map(|t| match t {
                Token::Word(w) => w,
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_tokenizer_reads_quotes_escapes_and_comments_as_nginx_does() {
        assert_eq!(
            words("return 200 'a\\'b\\\\c\\d' \"x;y\"; # } comment {\nz#y;"),
            [
                "return",
                "200",
                "a'b\\c\\d",
                "x;y",
                "Semicolon",
                "z#y",
                "Semicolon"
            ]
        );
        assert_eq!(words("a}b;"), ["a}b", "Semicolon"]);
        assert_eq!(words("a\\;b;"), ["a\\;b", "Semicolon"]);
    }

    #[test]
    fn braces_hidden_in_comments_cannot_close_the_block() {
        // Counted as text, these braces balance; Nginx sees only the `}` of the last line.
        let body = "return 200 'ok'; # {\n}\nlocation /_synapse/admin/ { return 200 'open'; # }\n";
        let error = parse(body).unwrap_err();
        assert!(error.contains("would close the location block"), "{error}");
        assert!(parse("if ($a) { return 200; }").is_err());
        assert!(parse("return 200;\n# just a comment { with braces }\n").is_ok());
    }

    #[test]
    fn only_allowed_directives_with_their_plain_forms_pass() {
        let ok = parse(
            "default_type application/json;\nadd_header Access-Control-Allow-Origin * always;\nreturn 200 '{\"a\":1}';\nproxy_pass http://bridge:8080/hook;",
        )
        .unwrap();
        assert_eq!(ok.directives.len(), 4);
        for bad in [
            "root /etc;",
            "alias /;",
            "include /etc/passwd;",
            "proxy_pass http://synapse:8008;",
            "proxy_pass http://bridge;",
            "return 200 a b;",
            "return abc;",
            "add_header X-A \"a\nb\";",
            "default_type text;",
            "return 200",
            ";",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn variables_are_refused_even_quoted() {
        for bad in [
            "return 200 '$http_authorization';",
            "return 200 \"${host}\";",
            "add_header X $x;",
        ] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains("variable"), "{bad}: {error}");
        }
    }

    #[test]
    fn only_prefix_exact_and_priority_locations_with_plain_uris_pass() {
        assert_eq!(Location::parse("= /a", "", &[]).unwrap().matcher(), "= /a");
        assert_eq!(
            Location::parse("^~ /a/", "", &[]).unwrap().matcher(),
            "^~ /a/"
        );
        assert_eq!(Location::parse("/a", "", &[]).unwrap().matcher(), "/a");
        for bad in [
            "~ ^/_synapse/admin",
            "~* x",
            "@named",
            "= /x {",
            "/a b c",
            "x",
            "= '/a b'",
            "/x;",
        ] {
            assert!(
                Location::parse(bad, "", &[]).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn directives_are_re_emitted_so_that_nginx_reads_the_same_words() {
        for body in [
            "return 200 '{\"a\":\"b\\\\\\\"c\"}';",
            "return 200 \"it's\\nfine\";",
            "add_header Link '</x>; rel=\"y\"' always;",
            "return 200 '}';",
        ] {
            let location = parse(body).unwrap();
            let emitted: String = location
                .directives
                .iter()
                .map(|d| format!("{d}\n"))
                .collect();
            assert_eq!(parse(&emitted).unwrap(), location, "{body} -> {emitted}");
        }
        let location = parse("add_header Access-Control-Allow-Origin * always;").unwrap();
        assert_eq!(
            location.directives[0].to_string(),
            "add_header Access-Control-Allow-Origin * always;"
        );
    }
}
