//! YAML written the way kubeadm writes it.
//!
//! kubeadm marshals objects to JSON and then to YAML with Go's yaml.v2 encoder. Matching its
//! output byte for byte makes rendered nodes comparable with real ones: keys sorted in
//! yaml.v2's order (digit runs compared as numbers, non-letters before letters), sequences
//! not indented under their key, strings plain unless they would read as another type or
//! start with an indicator (then single-quoted, or double-quoted when they must be), text
//! with line breaks as literal blocks, and plain scalars longer than 80 columns folded at
//! spaces.

use serde_json::Value;

const BEST_WIDTH: usize = 80;

/// `value` as a YAML document, ending in a newline.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other, 0, 0));
            out.push('\n');
        }
    }
    out
}

/// yaml.v2's key order.
fn key_less(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering::{Greater, Less};
    let (ar, br): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl { Less } else { Greater };
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an.saturating_mul(10).saturating_add(i64::from(ar[ai] as u8 - b'0'));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn.saturating_mul(10).saturating_add(i64::from(br[bi] as u8 - b'0'));
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

fn sorted(m: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = m.iter().collect();
    entries.sort_by(|a, b| key_less(a.0, b.0));
    entries
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn write_map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    for (i, (k, v)) in sorted(m).into_iter().enumerate() {
        // The first key of a map in a sequence item sits on the item's line.
        if i > 0 || !out.ends_with("- ") {
            pad(out, indent);
        }
        let key = scalar(&Value::String(k.clone()), indent, indent);
        out.push_str(&key);
        out.push(':');
        write_value(out, v, indent, indent + key.len() + 2, true);
    }
}

fn write_seq(out: &mut String, a: &[Value], indent: usize) {
    for (i, v) in a.iter().enumerate() {
        if i > 0 || !out.ends_with("- ") {
            pad(out, indent);
        }
        out.push('-');
        write_value(out, v, indent, indent + 2, false);
    }
}

/// Writes the value after `key:` or `-`; `column` is where an inline value would start.
fn write_value(out: &mut String, v: &Value, indent: usize, column: usize, in_map: bool) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            if in_map {
                out.push('\n');
                write_map(out, m, indent + 2);
            } else {
                out.push(' ');
                write_map(out, m, indent + 2);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            if in_map {
                // yaml.v2 does not indent a sequence under its key.
                out.push('\n');
                write_seq(out, a, indent);
            } else {
                out.push(' ');
                write_seq(out, a, indent + 2);
            }
        }
        Value::String(s) if s.contains('\n') => {
            out.push(' ');
            out.push_str(&literal(s, indent + 2));
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other, column, indent + 2));
            out.push('\n');
        }
    }
}

/// A literal block (`|`, `|-`, `|+` by its trailing line breaks), content indented.
fn literal(s: &str, indent: usize) -> String {
    let trailing = s.len() - s.trim_end_matches('\n').len();
    let chomp = match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    };
    let lead = if s.starts_with(' ') { "2" } else { "" };
    let mut out = format!("|{lead}{chomp}\n");
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        if !line.is_empty() {
            pad(&mut out, indent);
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

fn scalar(v: &Value, column: usize, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s, column, indent),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// Whether a plain scalar would be read back as something other than this string.
fn resolves_to_other(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true",
        "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", ".inf", ".Inf",
        ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN", "<<",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let first = s.chars().next().unwrap_or(' ');
    if !(first.is_ascii_digit() || "+-.".contains(first)) {
        return false;
    }
    is_int(s) || is_float(s) || is_base60(s) || is_timestamp(s)
}

fn is_int(s: &str) -> bool {
    let t = s.replace('_', "");
    let t = t.strip_prefix(['+', '-']).unwrap_or(&t);
    if let Some(h) = t.strip_prefix("0x") {
        return !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit());
    }
    if let Some(b) = t.strip_prefix("0b") {
        return !b.is_empty() && b.chars().all(|c| c == '0' || c == '1');
    }
    !t.is_empty() && t.chars().all(|c| c.is_ascii_digit())
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_float(s: &str) -> bool {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let digits = |x: &str| !x.is_empty() && x.chars().all(|c| c.is_ascii_digit());
    let m_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && frac.chars().all(|c| c.is_ascii_digit()),
        None => digits(mantissa),
    };
    let e_ok = exp.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    m_ok && e_ok
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`
fn is_base60(s: &str) -> bool {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (body, frac) = t.split_once('.').map_or((t, None), |(b, f)| (b, Some(f)));
    if frac.is_some_and(|f| !f.chars().all(|c| c.is_ascii_digit() || c == '_')) {
        return false;
    }
    let mut parts = body.split(':');
    let head = parts.next().unwrap_or("");
    let head_ok = head.starts_with(|c: char| c.is_ascii_digit())
        && head.chars().all(|c| c.is_ascii_digit() || c == '_');
    let rest: Vec<&str> = parts.collect();
    head_ok
        && !rest.is_empty()
        && rest.iter().all(|p| {
            let b = p.as_bytes();
            match b.len() {
                1 => b[0].is_ascii_digit(),
                2 => (b'0'..=b'5').contains(&b[0]) && b[1].is_ascii_digit(),
                _ => false,
            }
        })
}

/// yaml.v2 reads `2006-01-02` (and date-times starting so) as timestamps.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
}

/// What the emitter allows for a string: (plain, single-quoted).
fn allowed_styles(s: &str) -> (bool, bool) {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return (false, true);
    }
    let mut plain = true;
    let mut single = true;
    let space_after = |i: usize| chars.get(i + 1).is_none_or(|c| *c == ' ' || *c == '\t');
    let first = chars[0];
    if "#,[]{}&*!|>'\"%@`".contains(first)
        || (first == '-' && space_after(0))
        || ((first == '?' || first == ':') && space_after(0))
    {
        plain = false;
    }
    if s.starts_with("---") || s.starts_with("...") {
        plain = false;
    }
    for (i, c) in chars.iter().enumerate() {
        if *c == ':' && space_after(i) {
            plain = false;
        }
        if *c == '#' && i > 0 && (chars[i - 1] == ' ' || chars[i - 1] == '\t') {
            plain = false;
        }
        let printable = !c.is_control() || *c == '\t';
        if !printable || *c == '\u{feff}' {
            plain = false;
            single = false;
        }
    }
    if first == ' ' || chars[chars.len() - 1] == ' ' {
        plain = false;
    }
    (plain, single)
}

fn string(s: &str, column: usize, indent: usize) -> String {
    // A string that would read back as another type: yaml.v2 asks for double quotes.
    if resolves_to_other(s) {
        return double(s);
    }
    let (plain_ok, single_ok) = allowed_styles(s);
    if plain_ok {
        return fold(s, column, indent);
    }
    if single_ok {
        return fold(&format!("'{}'", s.replace('\'', "''")), column, indent);
    }
    double(s)
}

/// Folds a plain or single-quoted scalar at spaces past the 80th column, as yaml.v2's
/// emitter does, continuing on lines indented at `indent`.
fn fold(s: &str, column: usize, indent: usize) -> String {
    if column + s.len() <= BEST_WIDTH || !s.contains(' ') {
        return s.to_string();
    }
    let mut out = String::new();
    let mut col = column;
    let chars: Vec<char> = s.chars().collect();
    let mut prev_space = false;
    for (i, c) in chars.iter().enumerate() {
        if *c == ' ' && !prev_space && col > BEST_WIDTH && chars.get(i + 1).is_some_and(|n| *n != ' ') {
            out.push('\n');
            pad(&mut out, indent);
            col = indent;
            prev_space = true;
            continue;
        }
        prev_space = *c == ' ';
        out.push(*c);
        col += 1;
    }
    out
}

fn double(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn kubeadm_shapes() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"annotations": {"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": "[fd00::10]:6443"},
                         "creationTimestamp": null, "labels": {"component": "etcd", "tier": "control-plane"}},
            "spec": {"containers": [{"command": ["etcd", "--name=n1"], "image": "registry.k8s.io/etcd:3.6.6-0",
                                     "livenessProbe": {"httpGet": {"host": "127.0.0.1", "path": "/livez", "port": 2381}},
                                     "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}, "name": "etcd"}],
                     "hostNetwork": true, "priority": 2_000_001_000, "volumes": [], "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
            "status": {}
        });
        let expected = "\
apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: '[fd00::10]:6443'
  creationTimestamp: null
  labels:
    component: etcd
    tier: control-plane
spec:
  containers:
  - command:
    - etcd
    - --name=n1
    image: registry.k8s.io/etcd:3.6.6-0
    livenessProbe:
      httpGet:
        host: 127.0.0.1
        path: /livez
        port: 2381
    name: etcd
    resources:
      requests:
        cpu: 100m
        memory: 100Mi
  hostNetwork: true
  priority: 2000001000
  securityContext:
    seccompProfile:
      type: RuntimeDefault
  volumes: []
status: {}
";
        assert_eq!(to_string(&pod), expected);
    }

    #[test]
    fn quoting_follows_yaml_v2() {
        let cases = [
            ("127.0.0.1", "127.0.0.1"),
            ("::1", "::1"),
            ("3.10", "\"3.10\""),
            ("0", "\"0\""),
            ("", "\"\""),
            ("yes", "\"yes\""),
            ("on", "\"on\""),
            ("10:30", "\"10:30\""),
            ("2024-01-02", "\"2024-01-02\""),
            ("0s", "0s"),
            ("- a", "'- a'"),
            ("a: b", "'a: b'"),
            ("it's", "it's"),
            ("*", "'*'"),
            ("a #b", "'a #b'"),
            (" lead", "' lead'"),
            ("1e3", "\"1e3\""),
            ("0x1F", "\"0x1F\""),
            ("v1.37.0", "v1.37.0"),
            ("unix:///run/containerd/containerd.sock", "unix:///run/containerd/containerd.sock"),
        ];
        for (s, want) in cases {
            assert_eq!(string(s, 0, 2), want, "{s:?}");
        }
    }

    #[test]
    fn key_order_is_yaml_v2s() {
        let mut keys = vec!["a10", "a9", "aB", "a_b", "b", "A"];
        keys.sort_by(|a, b| key_less(a, b));
        assert_eq!(keys, ["A", "a_b", "a9", "a10", "aB", "b"]);
    }

    #[test]
    fn literal_blocks_and_nesting() {
        let v = json!({"data": {"Corefile": ".:53 {\n    errors\n}\n", "x": "no newline\nend"}, "list": [[1, 2], {"a": 1, "b": [true]}]});
        let want = "\
data:
  Corefile: |
    .:53 {
        errors
    }
  x: |-
    no newline
    end
list:
- - 1
  - 2
- a: 1
  b:
  - true
";
        assert_eq!(to_string(&v), want);
    }

    #[test]
    fn long_plain_strings_fold() {
        let v = json!({"k": "word ".repeat(30).trim_end()});
        let out = to_string(&v);
        assert!(out.lines().count() > 1, "{out}");
        assert!(out.lines().skip(1).all(|l| l.starts_with("  word")), "{out}");
    }
}
