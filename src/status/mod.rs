//! `kscript status`: which stage a node has reached, what runs on it, and what the next stage
//! must still produce.

pub mod spec;
