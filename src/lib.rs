//! taskcenter: a self-hosted task center for video analytics that speaks the
//! VIAS task-center API (v2).
#![forbid(unsafe_code)]
#![recursion_limit = "512"]

pub mod api;
pub mod cli;
pub mod datagen;
pub mod domain;
pub mod fuzzing;
pub mod identity;
pub mod metrics;
pub mod protocol;
pub mod scheduler;
pub mod store;
pub mod worker;
