//! The configuration a script reads as `cfg`.
//!
//! Three layers, each overriding the one before: the defaults (`defaults.yaml`, which is also
//! the schema: a key absent from it is unknown), the files given with `--config`, and the
//! `--set key=value` pairs. A value must have the type of its default; a default of `null`
//! accepts any value, and an empty map accepts any keys. Errors name the key and point at it
//! in the file.

use std::fmt;

use miette::{NamedSource, SourceSpan};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Span};

use crate::error::{ConfigError, Error};

/// A YAML value with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    /// Byte offset and length in the source it was read from.
    pub span: (usize, usize),
}

/// The value of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    /// Keys in document order, each with its own span.
    Map(Vec<(Node, Node)>),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    fn accepts(&self, other: &Value) -> bool {
        matches!(
            (self, other),
            (Value::Null, _)
                | (Value::Bool(_), Value::Bool(_))
                | (Value::Int(_), Value::Int(_))
                | (Value::Float(_), Value::Float(_) | Value::Int(_))
                | (Value::Str(_), Value::Str(_))
                | (Value::List(_), Value::List(_))
                | (Value::Map(_), Value::Map(_))
        ) || matches!(other, Value::Null)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::List(_) => f.write_str("[...]"),
            Value::Map(_) => f.write_str("{...}"),
        }
    }
}

/// A source the configuration was read from, kept for error reports.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// The merged configuration.
#[derive(Debug, Clone)]
pub struct Config {
    root: Node,
    /// The files merged so far, and where each key path was last set (file index, span).
    sources: Vec<Source>,
    origins: std::collections::HashMap<String, (usize, (usize, usize))>,
    /// Key paths whose map was empty in the defaults: they take any keys and values.
    open: Vec<Vec<String>>,
}

impl Config {
    /// Starts from the defaults document.
    pub fn from_defaults(src: &Source) -> Result<Self, Error> {
        let root = parse(src)?;
        if !matches!(root.value, Value::Map(_)) {
            return Err(config_error(src, root.span, "the defaults must be a map", None));
        }
        let mut open = Vec::new();
        collect_open(&root, &mut Vec::new(), &mut open);
        Ok(Self { root, open, sources: Vec::new(), origins: std::collections::HashMap::new() })
    }

    /// Overrides with a configuration file; unknown keys and wrong types are errors.
    pub fn merge_file(&mut self, src: &Source) -> Result<(), Error> {
        let doc = parse(src)?;
        if matches!(doc.value, Value::Null) {
            return Ok(());
        }
        self.merge_node(doc, src, &|_| None).map(|_| ())
    }

    /// Overrides with one parsed document; keys the defaults lack are refused unless
    /// `ignorable` passes them over. Returns the warnings for the keys passed over.
    pub fn merge_node(
        &mut self,
        doc: Node,
        src: &Source,
        ignorable: Ignorable<'_>,
    ) -> Result<Vec<String>, Error> {
        let index = self.sources.len();
        self.sources.push(src.clone());
        let mut m = Merger { src, open: &self.open, ignorable, warnings: Vec::new(), set: Vec::new() };
        m.merge(&mut self.root, doc, &mut Vec::new())?;
        for (path, span) in m.set {
            self.origins.insert(path, (index, span));
        }
        Ok(m.warnings)
    }

    /// The value at a dotted key path.
    pub fn get(&self, path: &str) -> Option<&Node> {
        let mut node = &self.root;
        for part in path.split('.') {
            let Value::Map(entries) = &node.value else { return None };
            node = &entries.iter().find(|(k, _)| matches!(&k.value, Value::Str(s) if s == part))?.1;
        }
        Some(node)
    }

    /// An error about the value at `path`: pointing at it in the file that set it, or naming
    /// it (a default, or a `--set`).
    pub fn error_at(&self, path: &str, message: &str, help: Option<String>) -> Error {
        match self.origins.get(path) {
            Some((i, span)) => config_error(&self.sources[*i], *span, &format!("`{path}`: {message}"), help),
            None => Error::Usage {
                message: format!(
                    "configuration `{path}`: {message}{}",
                    help.map(|h| format!(" ({h})")).unwrap_or_default()
                ),
            },
        }
    }

    /// Overrides one dotted key with a value given on the command line (`--set a.b=value`).
    /// The value is typed after the default: `true`, `42`, `[a, b]` and `{k: v}` are read as
    /// YAML where the default is a boolean, number, list or map; a string default takes the
    /// text as it is.
    pub fn set(&mut self, assignment: &str) -> Result<(), Error> {
        let (key, raw) = assignment.split_once('=').ok_or_else(|| Error::Usage {
            message: format!(
                "--set `{assignment}`: expected KEY=VALUE, such as `networking.podSubnet=10.244.0.0/16`"
            ),
        })?;
        let mut node = &mut self.root;
        let mut walked: Vec<String> = Vec::new();
        let parts: Vec<&str> = key.split('.').collect();
        let mut i = 0;
        while i < parts.len() {
            // Inside a free-form map the rest is one key: sysctl names hold dots.
            let part = if is_open(&self.open, &walked) {
                let rest = parts[i..].join(".");
                i = parts.len();
                rest
            } else {
                i += 1;
                parts[i - 1].to_string()
            };
            let part = part.as_str();
            walked.push(part.to_string());
            let Value::Map(entries) = &mut node.value else {
                return Err(Error::Usage {
                    message: format!("--set {key}: `{}` is not a map", walked[..walked.len() - 1].join(".")),
                });
            };
            let open = is_open(&self.open, &walked[..walked.len() - 1]);
            let pos = entries.iter().position(|(k, _)| matches!(&k.value, Value::Str(s) if s == part));
            let idx = match (pos, open) {
                (Some(i), _) => i,
                (None, true) => {
                    entries.push((str_node(part), Node { value: Value::Null, span: (0, 0) }));
                    entries.len() - 1
                }
                (None, false) => {
                    let known: Vec<&str> = entries
                        .iter()
                        .filter_map(
                            |(k, _)| {
                                if let Value::Str(s) = &k.value { Some(s.as_str()) } else { None }
                            },
                        )
                        .collect();
                    return Err(Error::Usage {
                        message: format!(
                            "--set {key}: unknown key `{}`{}",
                            walked.join("."),
                            suggestion(part, &known)
                                .map(|s| format!(" (did you mean `{s}`?)"))
                                .unwrap_or_default()
                        ),
                    });
                }
            };
            node = &mut entries[idx].1;
        }
        let src = Source { name: format!("--set {key}"), text: raw.to_string() };
        let value = match &node.value {
            Value::Str(_) => Value::Str(raw.to_string()),
            _ => parse(&src)?.value,
        };
        if !is_open(&self.open, &walked[..walked.len() - 1]) && !node.value.accepts(&value) {
            return Err(Error::Usage {
                message: format!(
                    "--set {key}: expected {}, got {} `{raw}`",
                    node.value.type_name(),
                    value.type_name()
                ),
            });
        }
        node.value = value;
        Ok(())
    }

    /// The configuration as a Rhai map.
    pub fn to_dynamic(&self) -> rhai::Dynamic {
        to_dynamic(&self.root)
    }

    /// The merged tree.
    pub fn root(&self) -> &Node {
        &self.root
    }
}

fn str_node(s: &str) -> Node {
    Node { value: Value::Str(s.to_string()), span: (0, 0) }
}

/// Records the key paths of the defaults' empty maps.
fn collect_open(node: &Node, path: &mut Vec<String>, open: &mut Vec<Vec<String>>) {
    if let Value::Map(entries) = &node.value {
        if entries.is_empty() {
            open.push(path.clone());
        }
        for (k, v) in entries {
            if let Value::Str(name) = &k.value {
                path.push(name.clone());
                collect_open(v, path, open);
                path.pop();
            }
        }
    }
}

/// Whether the map at `path` is free-form: it, or a map above it, was empty in the defaults.
fn is_open(open: &[Vec<String>], path: &[String]) -> bool {
    open.iter().any(|o| path.starts_with(o))
}

/// Decides about a key the defaults do not have: `Some(warning)` to pass it over with a
/// warning (a kubeadm field kscript does not use), `None` to refuse it.
pub type Ignorable<'a> = &'a dyn Fn(&[String]) -> Option<String>;

/// Merges one document over the defaults, checking keys and types.
struct Merger<'a> {
    src: &'a Source,
    open: &'a [Vec<String>],
    ignorable: Ignorable<'a>,
    warnings: Vec<String>,
    /// Every key path this document set, with the span of its value.
    set: Vec<(String, (usize, usize))>,
}

fn key_names(entries: &[(Node, Node)]) -> Vec<&str> {
    entries
        .iter()
        .filter_map(|(k, _)| if let Value::Str(s) = &k.value { Some(s.as_str()) } else { None })
        .collect()
}

impl Merger<'_> {
    fn merge(&mut self, base: &mut Node, over: Node, path: &mut Vec<String>) -> Result<(), Error> {
        if !path.is_empty() && is_open(self.open, &path[..path.len() - 1]) {
            self.set.push((path.join("."), over.span));
            *base = over;
            return Ok(());
        }
        if !base.value.accepts(&over.value) {
            let key =
                if path.is_empty() { "the document".to_string() } else { format!("`{}`", path.join(".")) };
            let message = format!(
                "{key} must be {}, not {} ({})",
                base.value.type_name(),
                over.value.type_name(),
                over.value
            );
            return Err(config_error(self.src, over.span, &message, None));
        }
        let over_span = over.span;
        match (&mut base.value, over.value) {
            (Value::Map(entries), Value::Map(over_entries)) => {
                let open = is_open(self.open, path);
                for (k, v) in over_entries {
                    let Value::Str(name) = &k.value else {
                        return Err(config_error(self.src, k.span, "keys must be strings", None));
                    };
                    path.push(name.clone());
                    match entries.iter().position(|(bk, _)| bk.value == k.value) {
                        Some(i) => self.merge(&mut entries[i].1, v, path)?,
                        None if open => {
                            self.set.push((path.join("."), v.span));
                            entries.push((k, v));
                        }
                        None => {
                            if let Some(w) = (self.ignorable)(path) {
                                self.warnings.push(w);
                                path.pop();
                                continue;
                            }
                            let known = key_names(entries);
                            let help = suggestion(name, &known).map_or_else(
                                || format!("known keys here: {}", known.join(", ")),
                                |s| format!("did you mean `{s}`?"),
                            );
                            let message = format!("unknown key `{}`", path.join("."));
                            return Err(config_error(self.src, k.span, &message, Some(help)));
                        }
                    }
                    path.pop();
                }
            }
            (slot, v) => {
                self.set.push((path.join("."), over_span));
                *slot = v;
            }
        }
        Ok(())
    }
}

/// The closest known key, when one is close enough to be a likely typo.
fn suggestion<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim_distance(&name.to_lowercase(), &k.to_lowercase()), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance (small inputs: keys).
fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn config_error(src: &Source, span: (usize, usize), message: &str, help: Option<String>) -> Error {
    Error::Config(Box::new(ConfigError {
        message: format!("{}: {message}", src.name),
        src: NamedSource::new(&src.name, src.text.clone()),
        span: SourceSpan::new(span.0.into(), span.1),
        help,
    }))
}

/// Parses one YAML document into a [`Node`] tree with byte spans.
pub fn parse(src: &Source) -> Result<Node, Error> {
    let mut docs = parse_documents(src)?;
    if docs.len() > 1 {
        return Err(config_error(
            src,
            docs[1].span,
            "expected one YAML document, found more",
            Some("put all settings in one document".into()),
        ));
    }
    Ok(docs.pop().unwrap_or(Node { value: Value::Null, span: (0, 0) }))
}

/// Parses every YAML document of a stream (`---` between them).
pub fn parse_documents(src: &Source) -> Result<Vec<Node>, Error> {
    let parser = Parser::new_from_str(&src.text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut result: Option<Node> = None;
    let mut docs = Vec::new();
    for event in parser {
        let (event, span) = event.map_err(|e| {
            let m = e.marker();
            let off = m.byte_offset().unwrap_or(0);
            config_error(src, (off, 0), &format!("not valid YAML: {}", e.info()), None)
        })?;
        let node = match event {
            Event::DocumentEnd => {
                docs.push(result.take().unwrap_or(Node { value: Value::Null, span: byte_span(&span) }));
                continue;
            }
            Event::Alias(_) => {
                return Err(config_error(src, byte_span(&span), "YAML aliases are not supported here", None));
            }
            Event::Scalar(text, style, _, tag) => {
                let tagged_str = tag.as_ref().is_some_and(|t| t.suffix() == "str");
                Node { value: scalar(&text, style, tagged_str), span: byte_span(&span) }
            }
            Event::SequenceStart(..) => {
                stack.push(Frame::List(Vec::new(), byte_span(&span).0));
                continue;
            }
            Event::MappingStart(..) => {
                stack.push(Frame::Map(Vec::new(), None, byte_span(&span).0));
                continue;
            }
            Event::SequenceEnd => {
                let Some(Frame::List(items, start)) = stack.pop() else {
                    unreachable!("parser balances sequences")
                };
                let end = byte_span(&span).0.max(start);
                Node { value: Value::List(items), span: (start, end - start) }
            }
            Event::MappingEnd => {
                let Some(Frame::Map(entries, _, start)) = stack.pop() else {
                    unreachable!("parser balances mappings")
                };
                let end = byte_span(&span).0.max(start);
                Node { value: Value::Map(entries), span: (start, end - start) }
            }
            _ => continue,
        };
        match stack.last_mut() {
            None => result = Some(node),
            Some(Frame::List(items, _)) => items.push(node),
            Some(Frame::Map(entries, pending, _)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => {
                    if let Some((dup, _)) = entries.iter().find(|(k, _)| k.value == key.value) {
                        let _ = dup;
                        return Err(config_error(
                            src,
                            key.span,
                            &format!("duplicate key {}", key.value),
                            None,
                        ));
                    }
                    entries.push((key, node));
                }
            },
        }
    }
    if let Some(last) = result {
        docs.push(last);
    }
    Ok(docs)
}

enum Frame {
    List(Vec<Node>, usize),
    Map(Vec<(Node, Node)>, Option<Node>, usize),
}

fn byte_span(span: &Span) -> (usize, usize) {
    let start = span.start.byte_offset().unwrap_or(0);
    let end = span.end.byte_offset().unwrap_or(start).max(start);
    (start, end - start)
}

/// Resolves a scalar with YAML 1.2's core schema.
fn scalar(text: &str, style: ScalarStyle, tagged_str: bool) -> Value {
    if style != ScalarStyle::Plain || tagged_str {
        return Value::Str(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Int(i);
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Int(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Value::Int(i);
    }
    let looks_numeric =
        text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if looks_numeric
        && text.bytes().any(|b| b.is_ascii_digit())
        && let Ok(x) = text.parse::<f64>()
    {
        return Value::Float(x);
    }
    Value::Str(text.to_string())
}

fn to_dynamic(node: &Node) -> rhai::Dynamic {
    match &node.value {
        Value::Null => rhai::Dynamic::UNIT,
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Float(x) => (*x).into(),
        Value::Str(s) => s.clone().into(),
        Value::List(items) => items.iter().map(to_dynamic).collect::<rhai::Array>().into(),
        Value::Map(entries) => {
            let mut m = rhai::Map::new();
            for (k, v) in entries {
                let key = match &k.value {
                    Value::Str(s) => s.clone(),
                    other => other.to_string(),
                };
                m.insert(key.into(), to_dynamic(v));
            }
            m.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source {
        Source { name: "test.yaml".into(), text: text.into() }
    }

    const DEFAULTS: &str = "a: 1\nb:\n  c: text\n  d: true\nfree: {}\nany: null\nlist: [x]\n";

    #[test]
    fn merges_and_types() {
        let mut c = Config::from_defaults(&src(DEFAULTS)).unwrap();
        c.merge_file(&src("a: 2\nb:\n  c: other\nfree:\n  k: v\nany: [1, 2]\n")).unwrap();
        c.set("b.d=false").unwrap();
        c.set("free.new=5").unwrap();
        let d = c.to_dynamic();
        let m = d.cast::<rhai::Map>();
        assert_eq!(m["a"].as_int().unwrap(), 2);
        let b = m["b"].clone().cast::<rhai::Map>();
        assert_eq!(b["c"].clone().into_string().unwrap(), "other");
        assert!(!b["d"].as_bool().unwrap());
    }

    #[test]
    fn unknown_key_points_at_the_key() {
        let mut c = Config::from_defaults(&src(DEFAULTS)).unwrap();
        let text = "a: 2\nb:\n  cc: x\n";
        let Err(Error::Config(e)) = c.merge_file(&src(text)) else { panic!("expected a config error") };
        let ConfigError { message, span, help, .. } = *e;
        assert!(message.contains("unknown key `b.cc`"), "{message}");
        assert_eq!(&text[span.offset()..span.offset() + span.len()], "cc");
        assert_eq!(help.as_deref(), Some("did you mean `c`?"));
    }

    #[test]
    fn wrong_type_is_an_error() {
        let mut c = Config::from_defaults(&src(DEFAULTS)).unwrap();
        let Err(Error::Config(e)) = c.merge_file(&src("a: hello\n")) else { panic!() };
        let message = e.message;
        assert!(message.contains("`a` must be an integer, not a string"), "{message}");
        assert!(c.set("a=x").is_err());
        assert!(c.set("nope=1").is_err());
        assert!(c.set("b.c").is_err());
    }

    #[test]
    fn quoted_numbers_stay_strings() {
        let n = parse(&src("v: \"1.28\"\nw: 1.28\nx: '0644'\n")).unwrap();
        let Value::Map(e) = n.value else { panic!() };
        assert_eq!(e[0].1.value, Value::Str("1.28".into()));
        assert_eq!(e[1].1.value, Value::Float(1.28));
        assert_eq!(e[2].1.value, Value::Str("0644".into()));
    }
}
