//! The file format: `gateway.yaml` as written, key by key.
//!
//! These structs are deliberately lenient. Every scalar is an `Option<Spanned<_>>` and durations,
//! addresses and enumerations are plain strings, so that serde only fails on input it cannot
//! represent at all (bad YAML, a list where a value belongs, `abc` for a number). Everything
//! else is judged by `validate.rs`, which then reports *all* bad values at once, each at its
//! `line:col`.
//!
//! Unknown keys are collected with `serde_ignored` rather than `deny_unknown_fields`, which
//! would stop at the first one. `Spanned<T>` keeps working through `serde_ignored`'s wrapper
//! (it forwards `deserialize_newtype_struct` with serde-saphyr's magic name), but the span
//! machinery then shows up as ignored paths of its own, which [`parse`] filters out.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

/// The whole file. Every top-level key of the contract; all optional.
#[derive(Debug, Deserialize)]
pub(super) struct RawConfig {
    pub listen: Option<Spanned<String>>,
    pub static_dir: Option<Spanned<String>>,
    pub sse: Option<RawSse>,
    pub history: Option<RawHistory>,
    pub channels: Option<Vec<Spanned<RawChannel>>>,
    pub broker: Option<Spanned<RawBroker>>,
    pub sources: Option<Vec<Spanned<RawSource>>>,
    pub routes: Option<Vec<Spanned<RawRoute>>>,
    /// Upstream pools by name. A map cannot repeat a name: duplicate YAML keys are a parse error.
    pub upstreams: Option<BTreeMap<String, Spanned<RawUpstream>>>,
    pub auth: Option<RawAuth>,
    pub cors: Option<RawCors>,
    pub limits: Option<RawLimits>,
    pub metrics: Option<RawMetrics>,
    pub shutdown: Option<RawShutdown>,
    /// CIDRs whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    /// The HTTPS listener.
    pub tls: Option<Spanned<RawTls>>,
    /// h2c with prior knowledge on the plain listener.
    pub http2_cleartext: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawTls {
    pub listen: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawSse {
    pub path: Option<Spanned<String>>,
    pub retry: Option<Spanned<String>>,
    pub heartbeat_interval: Option<Spanned<String>>,
    pub heartbeat: Option<Spanned<String>>,
    pub client_queue: Option<Spanned<i64>>,
    pub max_connection_lifetime: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub padding: Option<Spanned<i64>>,
    pub compression: Option<Spanned<bool>>,
}

/// `history:` at the top level, and a channel rule's override of it (key by key).
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawHistory {
    pub max_events: Option<Spanned<i64>>,
    pub max_age: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawChannel {
    pub name: Option<Spanned<String>>,
    pub subscribe: Option<Spanned<String>>,
    pub publish: Option<Spanned<String>>,
    pub history: Option<RawHistory>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawBroker {
    pub kind: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawSource {
    pub name: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub upstream: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub channel: Option<Spanned<String>>,
    pub channel_from_event_type: Option<Spanned<bool>>,
    pub channel_prefix: Option<Spanned<String>>,
    pub mode: Option<Spanned<String>>,
    pub linger: Option<Spanned<String>>,
    pub stall_timeout: Option<Spanned<String>>,
    /// Header name → value. Values may be secrets: never echoed in messages.
    pub headers: Option<BTreeMap<String, Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawRoute {
    pub path_prefix: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub upstream: Option<Spanned<String>>,
    pub strip_prefix: Option<bool>,
    pub auth: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rate_limit: Option<Spanned<RawRate>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawUpstream {
    pub servers: Option<Vec<Spanned<RawServer>>>,
    pub balance: Option<Spanned<String>>,
    pub hash_key: Option<Spanned<String>>,
    pub health_check: Option<Spanned<RawHealthCheck>>,
    pub passive: Option<Spanned<RawPassive>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub tls: Option<bool>,
    pub sni: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
}

/// A server of a pool: `host:port`, or `{addr: host:port, weight: N}`.
#[derive(Debug)]
pub(super) struct RawServer {
    pub addr: String,
    pub weight: Option<i64>,
}

impl<'de> Deserialize<'de> for RawServer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ServerVisitor;
        impl<'de> Visitor<'de> for ServerVisitor {
            type Value = RawServer;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("host:port, or {addr: host:port, weight: N}")
            }
            fn visit_str<E: de::Error>(self, addr: &str) -> Result<RawServer, E> {
                Ok(RawServer {
                    addr: addr.to_owned(),
                    weight: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawServer, A::Error> {
                let (mut addr, mut weight) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "addr" => addr = Some(map.next_value::<String>()?),
                        "weight" => weight = Some(map.next_value::<i64>()?),
                        other => return Err(de::Error::unknown_field(other, &["addr", "weight"])),
                    }
                }
                let addr = addr.ok_or_else(|| de::Error::missing_field("addr"))?;
                Ok(RawServer { addr, weight })
            }
        }
        deserializer.deserialize_any(ServerVisitor)
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RawHealthCheck {
    pub path: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub healthy_after: Option<Spanned<i64>>,
    pub unhealthy_after: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawPassive {
    pub failures: Option<Spanned<i64>>,
    pub eject_for: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAuth {
    pub jwt: Option<Spanned<RawJwt>>,
    pub cookie_name: Option<Spanned<String>>,
    pub api_keys: Option<Vec<Spanned<RawApiKey>>>,
    pub ticket_ttl: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawJwt {
    pub algorithms: Option<Vec<Spanned<String>>>,
    pub secret_env: Option<Spanned<String>>,
    pub secret_file: Option<Spanned<String>>,
    pub public_key_file: Option<Spanned<String>>,
    pub leeway: Option<Spanned<String>>,
    pub audience: Option<Spanned<String>>,
    pub issuer: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawApiKey {
    pub name: Option<Spanned<String>>,
    pub key_env: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub publish: Option<Vec<Spanned<String>>>,
    pub admin: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawCors {
    pub allowed_origins: Option<Vec<Spanned<String>>>,
    pub allow_credentials: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawLimits {
    pub max_connections: Option<Spanned<i64>>,
    pub max_connections_per_ip: Option<Spanned<i64>>,
    pub max_connections_per_user: Option<Spanned<i64>>,
    pub connect_rate_per_ip: Option<Spanned<RawRate>>,
    pub publish_rate: Option<Spanned<RawRate>>,
    pub ticket_rate: Option<Spanned<RawRate>>,
    pub max_event_bytes: Option<Spanned<i64>>,
    pub max_channels_per_connection: Option<Spanned<i64>>,
    pub header_read_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawRate {
    pub per_second: Option<Spanned<i64>>,
    pub burst: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawMetrics {
    pub path: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawShutdown {
    pub grace_period: Option<Spanned<String>>,
}

/// A 1-based position in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, col: 1 };

    /// Positions serde-saphyr does not know (line 0) become the start of the file, so that
    /// every message still has a usable `file:line:col`.
    pub fn of(loc: Location) -> Pos {
        if loc.line() == 0 {
            return Pos::START;
        }
        Pos {
            line: usize::try_from(loc.line()).unwrap_or(usize::MAX),
            col: usize::try_from(loc.column()).unwrap_or(usize::MAX).max(1),
        }
    }
}

/// A key present in the file that no struct above knows.
#[derive(Debug)]
pub(super) struct UnknownKey {
    /// Dotted path, sequence indices in brackets: `channels[0].nmae`.
    pub path: String,
    pub pos: Pos,
}

/// A problem serde could not get past: the only error reported for that file.
#[derive(Debug)]
pub(super) struct ParseFailure {
    pub pos: Pos,
    pub message: String,
}

/// The file, parsed leniently, with every unknown key located.
#[derive(Debug)]
pub(super) struct Parsed {
    pub raw: RawConfig,
    pub unknown: Vec<UnknownKey>,
}

/// How deep mappings and lists may nest. `gateway.yaml` needs 5 levels; deserialization recurses
/// once per level (several frames deep in debug builds), so serde-saphyr's default of 64 can
/// overflow a 2 MiB thread stack on hostile input. Deeper input is a located parse error.
const MAX_DEPTH: usize = 16;

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
        },
    }
}

/// Parses `text`. An empty document (or one holding only comments) is an empty config.
pub(super) fn parse(text: &str) -> Result<Parsed, ParseFailure> {
    let mut ignored: Vec<Vec<Segment>> = Vec::new();
    let result: Result<RawConfig, _> =
        serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
            serde_ignored::deserialize(de, |path| ignored.push(segments(&path)))
        });
    let raw = match result {
        Ok(raw) => raw,
        Err(err) => return Err(parse_failure(text, &err)),
    };
    let tree = Tree::parse(text);
    let unknown = ignored
        .into_iter()
        .filter_map(clean_path)
        .map(|segs| UnknownKey {
            pos: tree.locate(&segs),
            path: display_path(&segs),
        })
        .collect();
    Ok(Parsed { raw, unknown })
}

/// One step of a path as `serde_ignored` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
    /// `Option`'s `Some`: no step in the YAML.
    Some,
    /// A newtype struct, which here is always `Spanned`: no step in the YAML either, but it
    /// adds the synthesized `value` key (and reports its marker field as ignored).
    Newtype,
}

fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    use serde_ignored::Path;
    let (parent, seg) = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, index } => (parent, Segment::Index(*index)),
        Path::Map { parent, key } => (parent, Segment::Key(key.clone())),
        Path::Some { parent } => (parent, Segment::Some),
        Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            (parent, Segment::Newtype)
        }
    };
    let mut segs = segments(parent);
    segs.push(seg);
    segs
}

/// The key serde-saphyr's `Spanned` uses to mark its synthesized `{value, referenced, defined}`
/// view (see `serde_saphyr::spanned`). Not public, hence spelled out here; if a new version
/// renamed it, these paths would surface as unknown keys and the tests would fail.
const SPANNED_MARKER: &str = "__serde_saphyr_private_spanned";

/// Drops the steps `Spanned` and `Option` add, or the whole path if it is `Spanned`'s own
/// marker field rather than a key in the file.
fn clean_path(segs: Vec<Segment>) -> Option<Vec<Segment>> {
    let mut out = Vec::with_capacity(segs.len());
    let mut iter = segs.into_iter().peekable();
    while let Some(seg) = iter.next() {
        match seg {
            Segment::Some => {}
            Segment::Newtype => {
                // A newtype followed by a synthesized key is `Spanned`'s own structure.
                match iter.peek() {
                    Some(Segment::Key(k)) if k == SPANNED_MARKER => return None,
                    Some(Segment::Key(k)) if k == "value" => {
                        iter.next();
                    }
                    _ => {}
                }
            }
            other => out.push(other),
        }
    }
    Some(out)
}

fn display_path(segs: &[Segment]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
            Segment::Some | Segment::Newtype => {}
        }
    }
    out
}

/// Turns a serde-saphyr error into one located message, naming the key when it can be found.
fn parse_failure(text: &str, err: &serde_saphyr::Error) -> ParseFailure {
    let pos = err.location().map(Pos::of).unwrap_or(Pos::START);
    let inner = err.without_snippet().to_string();
    let mut message = inner.as_str();
    // The plain form ends in " at line L, column C", which our prefix already says.
    if let Some(loc) = err.location() {
        let suffix = format!(" at line {}, column {}", loc.line(), loc.column());
        message = message.strip_suffix(suffix.as_str()).unwrap_or(message);
    }
    if let Some((head, _)) = message.split_once(", set DuplicateKeyPolicy") {
        message = head;
    }
    let message = match message {
        "invalid i64" => "expected an integer".to_owned(),
        "invalid boolean" => "expected true or false".to_owned(),
        "expected string scalar" => "expected a single value, not a list or a mapping".to_owned(),
        "expected mapping start" => "expected a mapping (`key: value` entries)".to_owned(),
        "expected sequence start" => "expected a list".to_owned(),
        m if m.starts_with("budget breached: Depth") => {
            format!("lists and mappings nest more than {MAX_DEPTH} levels deep")
        }
        m if m.starts_with("budget breached") => {
            format!("the document is too large, or expands too much through aliases ({m})")
        }
        other => other.to_owned(),
    };
    let message = match Tree::parse(text).key_of_value_at(pos) {
        Some(key) => format!("{key}: {message}"),
        None => message,
    };
    ParseFailure { pos, message }
}

/// A generic view of the document that only remembers where keys and items are; used to place
/// unknown keys and type errors, which `serde_ignored` and serde report by path or by position.
#[derive(Debug, Default)]
struct Tree {
    root: Option<Spanned<Node>>,
}

#[derive(Debug)]
enum Node {
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

impl Tree {
    /// Never fails: a document this view cannot represent (say, a mapping used as a key) only
    /// means messages fall back to coarser positions.
    fn parse(text: &str) -> Tree {
        Tree {
            root: serde_saphyr::from_str_with_options(text, options()).ok(),
        }
    }

    /// Where the key or item at `segs` is; the deepest ancestor found if it is not.
    fn locate(&self, segs: &[Segment]) -> Pos {
        let Some(mut node) = self.root.as_ref() else {
            return Pos::START;
        };
        let mut pos = Pos::START;
        for seg in segs {
            let next = match (&node.value, seg) {
                (Node::Map(entries), Segment::Key(key)) => entries
                    .iter()
                    .find(|(k, _)| &k.value == key)
                    .map(|(k, v)| (Pos::of(k.referenced), v)),
                (Node::Seq(items), Segment::Index(i)) => {
                    items.get(*i).map(|v| (Pos::of(v.referenced), v))
                }
                _ => None,
            };
            match next {
                Some((p, child)) => {
                    pos = p;
                    node = child;
                }
                None => break,
            }
        }
        pos
    }

    /// The dotted path of the key whose value starts at `pos`, if any.
    fn key_of_value_at(&self, pos: Pos) -> Option<String> {
        fn walk(node: &Node, pos: Pos, path: &mut Vec<Segment>) -> bool {
            match node {
                Node::Map(entries) => entries.iter().any(|(k, v)| {
                    path.push(Segment::Key(k.value.clone()));
                    if Pos::of(v.referenced) == pos || walk(&v.value, pos, path) {
                        return true;
                    }
                    path.pop();
                    false
                }),
                Node::Seq(items) => items.iter().enumerate().any(|(i, v)| {
                    path.push(Segment::Index(i));
                    if Pos::of(v.referenced) == pos || walk(&v.value, pos, path) {
                        return true;
                    }
                    path.pop();
                    false
                }),
                Node::Scalar => false,
            }
        }
        let root = self.root.as_ref()?;
        let mut path = Vec::new();
        walk(&root.value, pos, &mut path).then(|| display_path(&path))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;

        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Node::Map(entries))
            }
        }

        deserializer.deserialize_any(NodeVisitor)
    }
}
