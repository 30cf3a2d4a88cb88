//! Control of ublk devices from outside their server, and ublk as a
//! [`Transport`] of the device life cycle ([`crate::serve::daemon`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;

use super::server::{preflight, serve, ublk_error, Options};
use crate::serve::daemon::{Observer, Stopped, Transport};
use crate::serve::runstate::{device_exists, wait_until};
use crate::serve::sys::BlockedSignals;
use crate::serve::target::Target;

/// Deletes ublk device `id` from outside its (dead) server and waits up to
/// `timeout` for it to go.
///
/// # Errors
/// No ublk driver; the delete command failing.
pub fn delete_device(id: u32, timeout: Duration) -> anyhow::Result<()> {
    preflight()?;
    let ctrl = libublk::ctrl::UblkCtrl::new_simple(id as i32)
        .map_err(|e| anyhow!("opening ublk device {id}: {}", ublk_error(&e)))?;
    // The asynchronous delete returns at once even when the device is
    // still held open; waiting is ours to bound.
    ctrl.del_dev_async()
        .map_err(|e| anyhow!("deleting ublk device {id}: {}", ublk_error(&e)))?;
    drop(ctrl);
    wait_until(timeout, || !device_exists(id));
    Ok(())
}

/// Where `/dev/ublkb<id>` is mounted, if anywhere (this mount namespace).
pub fn mounted_at(id: u32) -> Option<String> {
    let devno = std::fs::read_to_string(format!("/sys/class/block/ublkb{id}/dev")).ok()?;
    let devno = devno.trim();
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(2) == Some(&devno)).then(|| f.get(4).unwrap_or(&"?").to_string())
    })
}

/// ublk as the transport of a served device.
#[derive(Debug, Clone, Default)]
pub struct Ublk {
    /// Queues, depth, buffer size, start timeout.
    pub options: Options,
}

impl Transport for Ublk {
    fn preflight(&self) -> anyhow::Result<()> {
        Ok(preflight()?)
    }

    fn serve(
        &self,
        target: Arc<dyn Target>,
        observer: Arc<dyn Observer>,
        signals: &Arc<BlockedSignals>,
    ) -> anyhow::Result<Stopped> {
        Ok(serve(target, &self.options, observer, signals)?)
    }

    fn remove(&self, id: u32, timeout: Duration) -> anyhow::Result<()> {
        delete_device(id, timeout)
    }

    fn exists(&self, id: u32) -> bool {
        device_exists(id)
    }

    fn mounted_at(&self, id: u32) -> Option<String> {
        mounted_at(id)
    }

    fn kind(&self) -> &'static str {
        "ublk"
    }

    fn describe(&self, id: u32) -> String {
        format!("ublk device {id}")
    }

    fn device(&self, id: u32) -> String {
        format!("/dev/ublkb{id}")
    }
}
