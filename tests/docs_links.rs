//! The README and the references under `docs/` stay readable and connected: every relative
//! link (and `#anchor`) resolves, every table row has its header's cells, every reference is
//! reachable from the README, and the README stays short enough to read in ten minutes.
//!
//! A small reader of the Markdown that these files use (GitHub's flavour): fenced code blocks
//! and code spans hold no links, headings make anchors the way GitHub spells them.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every `docs/*.md`, sorted.
fn documents() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root().join("README.md"));
    docs
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The lines outside fenced code blocks, with their line numbers (from 1).
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut prose = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m => fence = None,
            (None, None) => prose.push((index + 1, line)),
            _ => {}
        }
    }
    prose
}

/// `line` with every code span blanked out (its backticks and contents made spaces), so that
/// neither a link nor a table pipe is read inside one.
fn without_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&c| c == '`').count();
        // The span ends at the next run of exactly as many backticks.
        let mut j = i + run;
        let mut end = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let close = chars[j..].iter().take_while(|&&c| c == '`').count();
                if close == run {
                    end = Some(j + close);
                    break;
                }
                j += close;
            } else {
                j += 1;
            }
        }
        match end {
            Some(end) => {
                out.extend(std::iter::repeat_n(' ', end - i));
                i = end;
            }
            None => {
                out.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    out
}

/// The targets of the inline links `[text](target)` of `line` (code spans already blanked).
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.trim_matches(['<', '>']).to_string());
        rest = &after[end..];
    }
    targets
}

/// The anchor GitHub gives a heading: lowercase, punctuation dropped but `-` and `_`, spaces
/// made `-`; a repeated heading gets `-1`, `-2`, ...
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let title = line[hashes..].trim().replace('`', "");
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while !seen.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
    }
    seen
}

/// What is wrong with one link of `from`, if anything.
fn broken(from: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        from.to_path_buf()
    } else {
        from.parent().expect("a document's directory").join(path)
    };
    if !file.exists() {
        return Some(format!("{target}: no file {}", file.display()));
    }
    let anchor = anchor?;
    if file.extension().is_none_or(|ext| ext != "md") {
        return Some(format!(
            "{target}: an anchor into a file that is not Markdown"
        ));
    }
    (!anchors(&read(&file)).contains(anchor))
        .then(|| format!("{target}: no heading with the anchor #{anchor}"))
}

#[test]
fn every_relative_link_and_anchor_in_the_readme_and_docs_resolves() {
    let mut problems = Vec::new();
    for doc in documents() {
        for (number, line) in prose_lines(&read(&doc)) {
            for target in link_targets(&without_code_spans(line)) {
                if let Some(problem) = broken(&doc, &target) {
                    problems.push(format!("{}:{number}: {problem}", doc.display()));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

/// The cells of a table row: split at the pipes that are not escaped, code spans aside.
fn cells(row: &str) -> usize {
    let row = without_code_spans(row);
    let row = row.trim().trim_start_matches('|');
    let row = row.strip_suffix('|').unwrap_or(row);
    let mut count = 1;
    let mut escaped = false;
    for c in row.chars() {
        match c {
            '\\' => escaped = !escaped,
            '|' if !escaped => count += 1,
            _ => escaped = false,
        }
    }
    count
}

#[test]
fn every_table_row_has_as_many_cells_as_its_header() {
    let mut problems = Vec::new();
    for doc in documents() {
        let text = read(&doc);
        let lines = prose_lines(&text);
        for pair in lines.windows(2) {
            let ((_, header), (number, delimiter)) = (pair[0], pair[1]);
            let is_delimiter = delimiter.trim_start().starts_with('|')
                && delimiter.contains("---")
                && delimiter.chars().all(|c| "|-: ".contains(c));
            if !is_delimiter {
                continue;
            }
            let columns = cells(header);
            let rows = lines
                .iter()
                .skip_while(|(n, _)| n <= &number)
                .take_while(|(_, row)| row.trim_start().starts_with('|'));
            for (row_number, row) in rows {
                if cells(row) != columns {
                    problems.push(format!(
                        "{}:{row_number}: {} cells under a header of {columns}",
                        doc.display(),
                        cells(row)
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken tables:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_reference_in_docs_is_linked_from_the_readme() {
    let readme = root().join("README.md");
    let linked: BTreeSet<String> = prose_lines(&read(&readme))
        .into_iter()
        .flat_map(|(_, line)| link_targets(&without_code_spans(line)))
        .map(|target| target.split('#').next().unwrap_or("").to_string())
        .collect();
    let unlinked: Vec<String> = documents()
        .into_iter()
        .skip(1)
        .map(|doc| {
            format!(
                "docs/{}",
                doc.file_name().expect("a name").to_string_lossy()
            )
        })
        .filter(|doc| !linked.contains(doc))
        .collect();
    assert!(
        unlinked.is_empty(),
        "not linked from README.md: {unlinked:?}"
    );
}

#[test]
fn the_readme_reads_in_ten_minutes_and_gives_the_test_command() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines < 300,
        "README.md has {lines} lines: move references to docs/"
    );
    assert!(
        readme.contains("scripts/test.sh"),
        "README.md must give the test command"
    );
}

#[test]
fn the_reader_finds_links_anchors_and_cells_as_github_does() {
    assert_eq!(
        link_targets(&without_code_spans(
            "see [`a`](docs/a.md#x), `[not](b.md)` and [c](<https://e.org/> \"title\")"
        )),
        ["docs/a.md#x", "https://e.org/"]
    );
    let headings = "# Ctrl-C, deadlines and dead hosts\n## `[defaults]`, `[hosts.NAME]`\n\
                    ```\n# not a heading\n```\n## Tests\n## Tests\n";
    assert_eq!(
        anchors(headings),
        BTreeSet::from(
            [
                "ctrl-c-deadlines-and-dead-hosts",
                "defaults-hostsname",
                "tests",
                "tests-1"
            ]
            .map(String::from)
        )
    );
    assert_eq!(cells("| a | `b|c` | d \\| e |"), 3);
    assert_eq!(cells("|---:|---|"), 2);
}
