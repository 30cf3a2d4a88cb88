//! Integration tests: the `obd` binary against the reference fixtures.

mod util;

mod cli;
mod corruption;
mod fixtures;
mod verify;
mod writers;
