//! Integration tests: the `obd` binary against the reference fixtures.

mod util;

mod alloc;

mod attach_cli;
mod bindings;
mod cli;
mod corruption;
mod crash;
mod fixtures;
mod fuzz_regressions;
mod hostile;
mod httpkit;
mod read;
mod readme;
mod registry;
mod regkit;
mod serve;
mod usability;
mod verify;
mod vm;
mod vmkit;
mod writers;
