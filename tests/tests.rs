//! Integration tests: the `obd` binary against the reference fixtures.

mod util;

mod fixtures;
mod corruption;
mod cli;
