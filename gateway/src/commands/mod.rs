//! The `strata` subcommands.

pub mod coordinator;
pub mod gateway;
pub mod standalone;
