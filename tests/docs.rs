//! The book (`docs/`) and the README hold together: every relative link of them (and of every
//! other Markdown file) leads to a file that exists and, with a `#fragment`, to a heading of it;
//! every chapter of `SUMMARY.md` exists and every chapter file is in it; and the configuration
//! chapter names every key of the shipped configurations and every key the file format accepts.
//!
//! Anchors follow mdBook's rule for heading ids (mdbook-html 0.5, `id_from_content` and
//! `unique_id`): the heading's text without its markup, trimmed and lowercased; letters, digits,
//! `_` and `-` kept, whitespace made `-`, everything else dropped; a repeated id gets `-1`, `-2`.
//! GitHub's rule gives the same ids for the headings of this repository.
//!
//! `./scripts/test` also builds the book with mdBook (which checks none of this).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---- Markdown: headings, anchors and links ----------------------------------------------------

/// The lines of a Markdown text that are not inside a fenced code block, with their line numbers.
fn prose_lines(markdown: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for (number, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m => fence = None,
            (None, None) => lines.push((number + 1, line)),
            _ => {}
        }
    }
    lines
}

/// The text a reader sees of inline Markdown: a link's label without its target, no backticks
/// and no emphasis stars.
fn plain_text(inline: &str) -> String {
    let mut out = String::new();
    let mut rest = inline;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find("](").and_then(|close| {
            let target_end = after[close + 2..].find(')')?;
            Some((close, close + 2 + target_end + 1))
        }) {
            Some((close, end)) => {
                out.push_str(&after[..close]);
                rest = &after[end..];
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace(['`', '*'], "")
}

/// mdBook's id for a heading's text (see the module's doc).
fn heading_id(heading: &str) -> String {
    plain_text(heading)
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|ch| {
            if ch.is_alphanumeric() || ch == '_' || ch == '-' {
                Some(ch)
            } else if ch.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// The ids of a Markdown file's headings, made unique as mdBook makes them.
fn anchors(markdown: &str) -> HashSet<String> {
    let mut used = HashSet::new();
    for (_, line) in prose_lines(markdown) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let id = heading_id(&line[hashes + 1..]);
        let mut unique = id.clone();
        let mut n = 0;
        while !used.insert(unique.clone()) {
            n += 1;
            unique = format!("{id}-{n}");
        }
    }
    used
}

/// The targets of the inline links and images of a Markdown text (`[label](target)`), with
/// their line numbers; code blocks left out.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in prose_lines(markdown) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            found.push((number, target.to_owned()));
            rest = &after[end..];
        }
    }
    found
}

/// `a/b/../c` as `a/c`, without touching the file system (a missing file stays missing).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// What is wrong with the relative links of `file` (a path inside `root`): a target that does
/// not exist, or a fragment that names no heading of its Markdown file. Links with a scheme
/// (`https:`, `mailto:`) are not followed.
fn broken_links(root: &Path, file: &Path) -> Vec<String> {
    let text = fs::read_to_string(root.join(file)).unwrap_or_default();
    let mut problems = Vec::new();
    for (line, target) in links(&text) {
        let is_url = target.split_once(':').is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        });
        if is_url {
            continue;
        }
        let (path, fragment) = match target.split_once('#') {
            Some((path, fragment)) => (path, Some(fragment)),
            None => (target.as_str(), None),
        };
        let resolved = if path.is_empty() {
            file.to_path_buf()
        } else {
            normalize(&file.parent().unwrap_or(Path::new("")).join(path))
        };
        let at = format!("{}:{line}: link to {target}", file.display());
        if resolved.as_os_str().is_empty()
            || resolved.starts_with("..")
            || !root.join(&resolved).exists()
        {
            problems.push(format!("{at}: {} does not exist", resolved.display()));
            continue;
        }
        let Some(fragment) = fragment else { continue };
        if resolved.extension().is_none_or(|e| e != "md") {
            problems.push(format!("{at}: a fragment into a file that is not Markdown"));
            continue;
        }
        let target_text = fs::read_to_string(root.join(&resolved)).unwrap_or_default();
        if !anchors(&target_text).contains(fragment) {
            problems.push(format!(
                "{at}: {} has no heading with the id `{fragment}`",
                resolved.display()
            ));
        }
    }
    problems
}

/// The chapter files `SUMMARY.md` lists.
fn summary_chapters(summary: &str) -> Vec<String> {
    links(summary)
        .into_iter()
        .map(|(_, target)| target)
        .collect()
}

fn book_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(repo().join("docs/src"))
        .expect("docs/src")
        .map(|entry| entry.expect("entry of docs/src").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .map(|path| {
            path.strip_prefix(repo())
                .expect("under the repo")
                .to_path_buf()
        })
        .collect();
    files.sort();
    files
}

/// The Markdown files of the repository (paths relative to it), build output, installed packages
/// and hidden directories left out.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    const SKIP: [&str; 4] = ["target", "node_modules", "dist", "docs/book"];
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let path = dir.join(&name);
            let hidden = name.to_str().is_none_or(|n| n.starts_with('.'));
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if !hidden
                    && !SKIP
                        .iter()
                        .any(|skip| path == Path::new(skip) || name == *skip)
                {
                    walk(root, &path, out);
                }
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out);
    out.sort();
    out
}

#[test]
fn every_relative_link_of_the_book_readme_and_other_markdown_resolves() {
    let files = markdown_files(repo());
    for expected in ["README.md", "SECURITY.md", "docs/src/configuration.md"] {
        assert!(
            files.contains(&PathBuf::from(expected)),
            "{expected} not among {files:?}"
        );
    }
    let problems: Vec<String> = files
        .iter()
        .flat_map(|file| broken_links(repo(), file))
        .collect();
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_summary_lists_every_chapter_and_only_existing_ones() {
    let summary = fs::read_to_string(repo().join("docs/src/SUMMARY.md")).expect("SUMMARY.md");
    let listed: BTreeSet<String> = summary_chapters(&summary).into_iter().collect();
    let present: BTreeSet<String> = book_files()
        .iter()
        .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
        .filter(|name| name != "SUMMARY.md")
        .collect();
    assert_eq!(
        listed, present,
        "chapters in SUMMARY.md against files in docs/src"
    );
}

#[test]
fn the_link_check_finds_a_missing_file_and_a_missing_heading() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir_all(dir.path().join("docs/src")).expect("mkdir");
    fs::write(
        dir.path().join("docs/src/a.md"),
        "# A\n\n## `GET /events`: the stream\n\n## Reload\n\n## Reload\n",
    )
    .expect("write a.md");
    fs::write(dir.path().join("src.rs"), "").expect("write src.rs");
    let b = "# B\n\
             [ok](a.md#get-events-the-stream) [ok](a.md#reload-1) [ok](#b) [ok](../../src.rs)\n\
             [ok](https://example.com/x.md#nowhere) ![ok](a.md)\n\
             ```\n[not a link](nowhere.md)\n```\n\
             [bad](a.md#reload-2) [bad](c.md) [bad](#nowhere) [bad](../../src.rs#L1) [bad](../../../outside.md)\n";
    fs::write(dir.path().join("docs/src/b.md"), b).expect("write b.md");

    let problems = broken_links(dir.path(), Path::new("docs/src/b.md"));
    let bad: Vec<&str> = problems
        .iter()
        .map(|p| {
            p.split(": link to ")
                .nth(1)
                .and_then(|rest| rest.split(':').next())
                .unwrap_or(p)
        })
        .collect();
    assert_eq!(
        bad,
        [
            "a.md#reload-2",
            "c.md",
            "#nowhere",
            "../../src.rs#L1",
            "../../../outside.md"
        ],
        "{problems:#?}"
    );
    assert!(problems[0].starts_with("docs/src/b.md:7:"), "{problems:#?}");
}

#[test]
fn heading_ids_follow_mdbook() {
    // mdbook-html's own cases, and headings of this book.
    assert_eq!(
        heading_id("`--passes`: add more rustdoc passes"),
        "--passes-add-more-rustdoc-passes"
    );
    assert_eq!(
        heading_id("Method-call 🐙 expressions \u{1f47c}"),
        "method-call--expressions-"
    );
    assert_eq!(heading_id("_-_12345"), "_-_12345");
    assert_eq!(
        heading_id("Event ids: `<epoch>-<seq>`"),
        "event-ids-epoch-seq"
    );
    assert_eq!(heading_id("`DELETE /clients/{id}`"), "delete-clientsid");
    assert_eq!(heading_id("Several nodes (Redis)"), "several-nodes-redis");
    assert_eq!(heading_id("[Linked](x.md) *heading*"), "linked-heading");
}

// ---- Configuration keys ---------------------------------------------------------------------

/// `gateway.yaml` with its example keys uncommented: a comment line whose text is a YAML key
/// (`# compression: true`, `#   algorithms: [HS256]`) becomes that line, at the indentation the
/// comment marker stood at plus the text's own. The prose of the comments never starts with a
/// lowercase key and a colon.
fn uncomment_examples(yaml: &str) -> String {
    let mut out = String::new();
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        let example = line.trim_start().strip_prefix("# ").filter(|text| {
            let key = text.trim_start().trim_start_matches("- ");
            key.split_once(':').is_some_and(|(name, value)| {
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && (value.is_empty() || value.starts_with(' '))
            })
        });
        match example {
            Some(text) => out.push_str(&format!("{}{text}", " ".repeat(indent))),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Every key path of a configuration: `sse.heartbeat_interval`, `channels[].name`, and for the
/// mappings whose keys are names rather than keys (pools, request headers) `upstreams.NAME` and
/// nothing below `sources[].headers`.
fn key_paths(value: &Value) -> BTreeSet<String> {
    fn walk(value: &Value, path: &str, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let key = if path == "upstreams" {
                        "NAME"
                    } else {
                        key.as_str()
                    };
                    let child_path = if path.is_empty() {
                        key.to_owned()
                    } else {
                        format!("{path}.{key}")
                    };
                    out.insert(child_path.clone());
                    if child_path != "sources[].headers" {
                        walk(child, &child_path, out);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, &format!("{path}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(value, "", &mut out);
    out
}

fn config_key_paths(yaml: &str) -> BTreeSet<String> {
    let value: Value = serde_saphyr::from_str(yaml).expect("the configuration parses as YAML");
    key_paths(&value)
}

/// The keys the tables of the configuration chapter document, each with its row: the backticked
/// names of a row's first cell, where a bare name after a path is that path's sibling
/// (`` `auth.jwt.secret_env` / `secret_file` ``).
fn documented_keys(chapter: &str) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    for (_, line) in prose_lines(chapter) {
        let Some(row) = line.strip_prefix('|') else {
            continue;
        };
        let Some((first, rest)) = row.split_once(" | ") else {
            continue;
        };
        let mut last: Option<String> = None;
        for name in first.split('`').skip(1).step_by(2) {
            let key = match &last {
                Some(prev) if !name.contains(['.', '[']) => match prev.rfind(['.', ']']) {
                    Some(cut) => format!("{}{name}", &prev[..=cut]),
                    None => name.to_owned(),
                },
                _ => name.to_owned(),
            };
            keys.insert(key.clone(), rest.to_owned());
            last = Some(key);
        }
    }
    keys
}

/// Whether the chapter documents a key: its own row; rows of keys below it (`tls` by
/// `tls.listen`); or, for a key of a compound value, its parent's row naming it as a word
/// (`health_check.path` in the row of `health_check`, `{path, interval, ...}`).
fn documented(path: &str, keys: &BTreeMap<String, String>) -> bool {
    if keys.contains_key(path) {
        return true;
    }
    if keys
        .keys()
        .any(|k| k.starts_with(&format!("{path}.")) || k.starts_with(&format!("{path}[]")))
    {
        return true;
    }
    let Some((parent, leaf)) = path.rsplit_once('.') else {
        return false;
    };
    let parent = parent.strip_suffix("[]").unwrap_or(parent);
    keys.get(parent).is_some_and(|row| {
        row.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| word == leaf)
    })
}

fn configuration_chapter() -> BTreeMap<String, String> {
    let chapter =
        fs::read_to_string(repo().join("docs/src/configuration.md")).expect("configuration.md");
    let keys = documented_keys(&chapter);
    assert!(
        keys.len() > 50,
        "keys found in the configuration chapter: {keys:?}"
    );
    keys
}

fn undocumented(paths: &BTreeSet<String>, keys: &BTreeMap<String, String>) -> Vec<String> {
    paths
        .iter()
        .filter(|path| !documented(path, keys))
        .cloned()
        .collect()
}

#[test]
fn the_configuration_chapter_names_every_key_of_the_shipped_configurations() {
    let keys = configuration_chapter();
    for file in ["gateway.yaml", "deploy/gateway.yaml"] {
        let yaml = fs::read_to_string(repo().join(file)).expect(file);
        let paths = config_key_paths(&uncomment_examples(&yaml));
        assert!(
            paths.contains("sse.heartbeat_interval") || file != "gateway.yaml",
            "{paths:?}"
        );
        let missing = undocumented(&paths, &keys);
        assert!(
            missing.is_empty(),
            "keys of {file} missing from docs/src/configuration.md: {missing:?}"
        );
    }
}

/// The key paths of the file format, read from the `Raw*` structs of `src/config/file.rs`
/// (`gateway.yaml` as serde reads it): a field of type `Vec<RawX>` adds `[]`, a
/// `BTreeMap<String, RawX>` adds `.NAME`, a map of anything else stops there.
fn file_format_paths(source: &str) -> BTreeSet<String> {
    let mut structs: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    let mut current: Option<&str> = None;
    for line in source.lines() {
        let line = line.trim();
        if let Some(name) = line
            .strip_prefix("pub(super) struct ")
            .and_then(|rest| rest.strip_suffix(" {"))
            .filter(|name| name.starts_with("Raw"))
        {
            current = Some(name);
            structs.entry(name).or_default();
        } else if line == "}" {
            current = None;
        } else if let (Some(name), Some((field, ty))) = (
            current,
            line.strip_prefix("pub ").and_then(|f| f.split_once(": ")),
        ) {
            structs
                .entry(name)
                .or_default()
                .push((field, ty.trim_end_matches(',')));
        }
    }
    fn walk(
        structs: &BTreeMap<&str, Vec<(&str, &str)>>,
        name: &str,
        path: &str,
        out: &mut BTreeSet<String>,
    ) {
        for (field, ty) in structs.get(name).map(Vec::as_slice).unwrap_or_default() {
            let field_path = if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            out.insert(field_path.clone());
            let Some(inner) = ty
                .split(['<', '>', ',', ' '])
                .find(|t| structs.contains_key(t))
            else {
                continue;
            };
            let below = if ty.contains("BTreeMap<") {
                format!("{field_path}.NAME")
            } else if ty.contains("Vec<") {
                format!("{field_path}[]")
            } else {
                field_path
            };
            walk(structs, inner, &below, out);
        }
    }
    let mut out = BTreeSet::new();
    walk(&structs, "RawConfig", "", &mut out);
    out
}

#[test]
fn the_configuration_chapter_names_every_key_of_the_file_format() {
    let source = fs::read_to_string(repo().join("src/config/file.rs")).expect("src/config/file.rs");
    let paths = file_format_paths(&source);
    for expected in [
        "listen",
        "sse.compression",
        "channels[].history.max_age",
        "upstreams.NAME.servers[].weight",
    ] {
        assert!(
            paths.contains(expected),
            "{expected} not among the file format's keys: {paths:?}"
        );
    }
    let missing = undocumented(&paths, &configuration_chapter());
    assert!(
        missing.is_empty(),
        "keys of src/config/file.rs missing from docs/src/configuration.md: {missing:?}"
    );
}

#[test]
fn the_key_check_finds_an_undocumented_key() {
    let yaml = "sse:\n  heartbeat_interval: 15s\n  # compression: true\n\
                # Prose: a sentence with a colon, not a key.\n\
                upstreams:\n  pool:\n    servers: [{addr: 'a:1', weight: 2}]\n    health_check: {path: /h}\n\
                sources:\n  - name: s\n    headers: {Authorization: x}\n";
    let paths = config_key_paths(&uncomment_examples(yaml));
    let expected = [
        "sse",
        "sse.compression",
        "sse.heartbeat_interval",
        "sources",
        "sources[].headers",
        "sources[].name",
        "upstreams",
        "upstreams.NAME",
        "upstreams.NAME.health_check",
        "upstreams.NAME.health_check.path",
        "upstreams.NAME.servers",
        "upstreams.NAME.servers[].addr",
        "upstreams.NAME.servers[].weight",
    ];
    assert_eq!(paths, expected.into_iter().map(str::to_owned).collect());

    let chapter = "| key | type |\n|---|---|\n\
                   | `sse.heartbeat_interval` / `compression` | duration |\n\
                   | `sources[].name`, `sources[].headers` | string |\n\
                   | `upstreams` | mapping |\n\
                   | `upstreams.NAME.servers` | list of `{addr, weight}` |\n\
                   | `upstreams.NAME.health_check` | `{interval}` |\n";
    let keys = documented_keys(chapter);
    assert_eq!(
        undocumented(&paths, &keys),
        ["upstreams.NAME.health_check.path"]
    );
}
