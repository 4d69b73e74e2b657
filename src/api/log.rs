//! Messages from scripts.

use std::rc::Rc;

use rhai::{Engine, FuncRegistration};

use super::Ctx;

pub fn register(engine: &mut Engine, ctx: &Rc<Ctx>) {
    let c = ctx.clone();
    FuncRegistration::new("info")
        .with_comments([
            "/// Prints `message` under the current step (for what a person running kscript needs to know).",
        ])
        .with_params_info(["message: &str", "()"])
        .register_into_engine(engine, move |message: &str| c.report.borrow_mut().message(message));
    let c = ctx.clone();
    FuncRegistration::new("warn")
        .with_comments([
            "/// Prints `message` as a warning on stderr; the run goes on. The same message is",
            "/// printed once a run, however many steps warn it.",
        ])
        .with_params_info(["message: &str", "()"])
        .register_into_engine(engine, move |message: &str| {
            c.report.borrow_mut().warn(message);
        });
}
