//! kscript: kubeadm's phases as Rhai scripts you can read and edit.
//!
//! Data flows one way: [`cli`] → [`runner`] → [`engine`] → script → [`api`] → [`host`] →
//! [`root`] and [`journal`] → [`report`].

pub mod api;
pub mod apiref;
pub mod bootstrap;
pub mod check;
pub mod cli;
pub mod config;
pub mod eject;
pub mod engine;
pub mod error;
pub mod host;
pub mod journal;
pub mod kubeadm;
pub mod patches;
pub mod pki;
pub mod report;
pub mod root;
pub mod runner;
pub mod script_error;
pub mod snapshot;
pub mod stages;
pub mod status;
pub mod stock;
pub mod suite;
pub mod tree;
pub mod validate;
pub mod yaml;
