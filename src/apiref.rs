//! The script API reference, generated from the engine's own metadata (`kscript api`).

use rhai::Engine;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(default)]
    functions: Vec<Function>,
}

/// One registered function, as the engine describes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Function {
    pub name: String,
    pub signature: String,
    #[serde(default)]
    pub doc_comments: Vec<String>,
}

/// Every function kscript registers (not Rhai's own), sorted by name then signature.
pub fn functions(engine: &Engine) -> Vec<Function> {
    let json = engine.gen_fn_metadata_to_json(false).unwrap_or_default();
    let mut fns = serde_json::from_str::<Metadata>(&json).map(|m| m.functions).unwrap_or_default();
    fns.sort_by(|a, b| (&a.name, &a.signature).cmp(&(&b.name, &b.signature)));
    fns
}

/// The reference as text: each signature, then its documentation.
pub fn reference(engine: &Engine) -> String {
    let mut out = String::from(
        "kscript script API\n\nFunctions scripts can call, besides Rhai's own language and standard library.\n\
         Paths are node paths (`/etc/...`), resolved inside the node root.\n",
    );
    let fns = functions(engine);
    for (i, f) in fns.iter().enumerate() {
        if i == 0 || fns[i - 1].name != f.name || fns[i - 1].doc_comments != f.doc_comments {
            out.push('\n');
        }
        out.push_str(&f.signature);
        out.push('\n');
        // Overloads that share their documentation list their signatures, then it once.
        if fns.get(i + 1).is_some_and(|n| n.name == f.name && n.doc_comments == f.doc_comments) {
            continue;
        }
        for block in &f.doc_comments {
            for line in block.lines() {
                let text = line
                    .trim_start()
                    .trim_start_matches("///")
                    .trim_start_matches("/**")
                    .trim_end_matches("*/");
                let text = text.strip_prefix(' ').unwrap_or(text);
                out.push_str(format!("    {text}").trim_end());
                out.push('\n');
            }
        }
    }
    out
}
