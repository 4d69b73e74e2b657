//! The stock scripts and stdlib modules, built into the binary (`kscript eject` writes them out).

/// A file built into the binary.
#[derive(Debug, Clone, Copy)]
pub struct Embedded {
    pub name: &'static str,
    pub text: &'static str,
}

macro_rules! embed {
    ($dir:literal: $($name:literal),* $(,)?) => {
        &[$(Embedded { name: $name, text: include_str!(concat!("../", $dir, "/", $name)) }),*]
    };
}

/// The stock flows users run and fork.
pub const SCRIPTS: &[Embedded] = embed!("scripts": "certs.rhai", "control-plane.rhai", "example.rhai", "images.rhai", "reset.rhai", "token.rhai", "upgrade.rhai", "worker.rhai");

/// The stdlib: modules scripts import, and the configuration defaults.
pub const STDLIB: &[Embedded] = embed!(
    "stdlib": "bundle.rhai",
    "cluster.rhai",
    "containerd.rhai",
    "defaults.yaml",
    "flannel.rhai",
    "ha.rhai",
    "join.rhai",
    "kube.rhai",
    "kubelet.rhai",
    "kubelet_unit.rhai",
    "manifests.rhai",
    "node.rhai",
    "packages.rhai",
    "pki.rhai",
    "preflight.rhai",
    "reset.rhai",
    "status.rhai",
    "upgrade.rhai",
    "versions.rhai",
);

/// A stock script by name, with or without `.rhai`.
pub fn script(name: &str) -> Option<&'static Embedded> {
    let name = name.strip_prefix("builtin:").unwrap_or(name);
    SCRIPTS.iter().find(|e| e.name == name || e.name.strip_suffix(".rhai") == Some(name))
}

/// A stdlib file by file name (`node.rhai`, `defaults.yaml`).
pub fn stdlib(name: &str) -> Option<&'static Embedded> {
    STDLIB.iter().find(|e| e.name == name)
}

/// The first line of a script's leading comment, as its summary.
pub fn summary(e: &Embedded) -> String {
    e.text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("//"))
        .map(|l| {
            let text = l.trim_start_matches('/').trim();
            // `// name.rhai: what it does` -> `what it does`
            text.strip_prefix(e.name).map_or(text, |t| t.trim_start_matches(':').trim()).to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::rc::Rc;

    use super::*;
    use crate::api::Ctx;
    use crate::host::{Host, Mode};
    use crate::report::Reporter;
    use crate::root::NodeRoot;

    /// Every file in scripts/ and stdlib/ is built in: none is forgotten in the lists above.
    #[test]
    fn every_stock_file_is_embedded() {
        for (dir, list) in [("scripts", SCRIPTS), ("stdlib", STDLIB)] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            for entry in std::fs::read_dir(path).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                assert!(list.iter().any(|e| e.name == name), "{dir}/{name} is not embedded in stock.rs");
            }
        }
    }

    /// Every stock script and stdlib module compiles, before anything runs.
    #[test]
    fn every_script_and_module_compiles() {
        let ctx = Rc::new(Ctx::new(
            NodeRoot::new(Path::new("/")).unwrap(),
            Host::for_mode(Mode::DryRun),
            Reporter::silent(),
        ));
        let engine = crate::engine::build(&ctx, None, &Rc::default(), crate::engine::Limits::default());
        let mut scope = rhai::Scope::new();
        scope.push_constant("cfg", rhai::Map::new());
        for e in SCRIPTS.iter().chain(STDLIB).filter(|e| e.name.ends_with(".rhai")) {
            if let Err(err) = engine.compile_with_scope(&scope, e.text) {
                panic!("{} does not compile: {err}", e.name);
            }
        }
    }

    #[test]
    fn every_api_function_is_documented() {
        let ctx = Rc::new(Ctx::new(
            NodeRoot::new(Path::new("/")).unwrap(),
            Host::for_mode(Mode::DryRun),
            Reporter::silent(),
        ));
        let engine = crate::engine::build(&ctx, None, &Rc::default(), crate::engine::Limits::default());
        let fns = crate::apiref::functions(&engine);
        assert!(fns.len() > 15, "the API lists {} functions", fns.len());
        for f in fns {
            assert!(!f.doc_comments.is_empty(), "{} has no doc comment", f.signature);
        }
    }
}
