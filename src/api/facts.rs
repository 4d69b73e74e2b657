//! Facts about the machine: host name and address.

use std::rc::Rc;

use rhai::{Dynamic, Engine, EvalAltResult, FuncRegistration};

use super::{Ctx, effect_error};

pub fn register(engine: &mut Engine, ctx: &Rc<Ctx>) {
    let c = ctx.clone();
    FuncRegistration::new("hostname")
        .with_comments(["/// This machine's host name, lower-cased as kubeadm uses it for the node name."])
        .with_params_info(["String"])
        .register_into_engine(engine, move || -> Result<String, Box<EvalAltResult>> {
            c.host
                .facts
                .hostname()
                .map(|h| h.to_lowercase())
                .map_err(|e| effect_error(format!("cannot read the host name: {e}")))
        });
    let c = ctx.clone();
    FuncRegistration::new("default_address")
        .with_comments([
            "/// The IPv4 address of the interface that holds this machine's default route (failing",
            "/// that, the first address that is not loopback), as kubeadm picks the advertise",
            "/// address; `()` when there is none.",
        ])
        .with_params_info(["Dynamic"])
        .register_into_engine(engine, move || -> Result<Dynamic, Box<EvalAltResult>> {
            let addr = c
                .host
                .facts
                .default_address()
                .map_err(|e| effect_error(format!("cannot list addresses: {e}")))?;
            Ok(addr.map_or(Dynamic::UNIT, |a| a.to_string().into()))
        });
}
