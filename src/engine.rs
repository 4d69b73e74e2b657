//! The one function that builds the Rhai engine: its limits, its module resolver chain and
//! the script API.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

use crate::api::{self, Ctx};
use crate::stock;

/// Limits a script runs within; a runaway script stops with an error that names the limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub max_modules: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: 50_000_000,
            max_call_levels: 64,
            max_expr_depth: 128,
            max_string_size: 16 << 20,
            max_array_size: 1 << 20,
            max_map_size: 1 << 20,
            max_modules: 64,
        }
    }
}

/// Source texts by name (scripts and modules), for error reports.
pub type Sources = Rc<RefCell<HashMap<String, String>>>;

/// Builds the engine a script runs in.
///
/// `fork_dir` is the folder of a script on disk: its `stdlib/` is searched before the
/// built-in stdlib, so a forked module replaces the stock one.
pub fn build(ctx: &Rc<Ctx>, fork_dir: Option<PathBuf>, sources: &Sources, limits: Limits) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth / 2)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_max_modules(limits.max_modules)
        .set_fail_on_invalid_map_property(true)
        .set_strict_variables(true);
    engine.set_module_resolver(Resolver { fork_dir, sources: sources.clone(), cache: RefCell::default() });
    let c = ctx.clone();
    engine.on_print(move |s| c.report.borrow_mut().message(s));
    let c = ctx.clone();
    engine.on_debug(move |s, src, pos| {
        let at = match (src, pos.line()) {
            (Some(src), Some(line)) => format!("{src}:{line}: "),
            _ => String::new(),
        };
        c.report.borrow_mut().message(&format!("[debug] {at}{s}"));
    });
    api::register_all(&mut engine, ctx);
    engine
}

/// Finds modules: `import "name"` looks in the script's `stdlib/` folder, then in the
/// built-in stdlib; `import "./path"` (or any name with a `/`) is a file relative to the
/// script's folder.
struct Resolver {
    fork_dir: Option<PathBuf>,
    sources: Sources,
    cache: RefCell<HashMap<String, Shared<Module>>>,
}

impl Resolver {
    /// The source name and text of a module.
    fn find(&self, path: &str) -> Option<(String, String)> {
        find_module(self.fork_dir.as_deref(), path)
    }
}

/// Where `import "path"` finds its module, as the source name and text: a name with a `/` (or
/// ending in `.rhai`) is a file relative to the script's folder; a plain name is
/// `fork_dir/stdlib/NAME.rhai`, else the built-in `stdlib/NAME.rhai`.
pub fn find_module(fork_dir: Option<&Path>, path: &str) -> Option<(String, String)> {
    let base = fork_dir.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    if path.contains('/') || path.ends_with(".rhai") {
        let file = base.join(if path.ends_with(".rhai") { path.to_string() } else { format!("{path}.rhai") });
        return std::fs::read_to_string(&file).ok().map(|t| (file.display().to_string(), t));
    }
    if let Some(dir) = fork_dir {
        let file = dir.join("stdlib").join(format!("{path}.rhai"));
        if let Ok(t) = std::fs::read_to_string(&file) {
            return Some((file.display().to_string(), t));
        }
    }
    stock::stdlib(&format!("{path}.rhai")).map(|e| (format!("builtin:stdlib/{}", e.name), e.text.to_string()))
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let (name, text) = self
            .find(path)
            .ok_or_else(|| Box::new(EvalAltResult::ErrorModuleNotFound(path.to_string(), pos)))?;
        if let Some(m) = self.cache.borrow().get(&name) {
            return Ok(m.clone());
        }
        self.sources.borrow_mut().insert(name.clone(), text.clone());
        let in_module = |e: Box<EvalAltResult>| Box::new(EvalAltResult::ErrorInModule(name.clone(), e, pos));
        let mut ast = engine.compile(&text).map_err(|e| in_module(e.into()))?;
        ast.set_source(name.as_str());
        let mut module = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(in_module)?;
        module.set_id(name.as_str());
        let module: Shared<Module> = module.into();
        self.cache.borrow_mut().insert(name, module.clone());
        Ok(module)
    }
}
