//! Integration tests: the `obd` binary against the reference fixtures.

mod util;

mod attach_cli;
mod cli;
mod corruption;
mod fixtures;
mod read;
mod verify;
mod vm;
mod vmkit;
mod writers;
