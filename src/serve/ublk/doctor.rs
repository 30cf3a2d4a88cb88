//! `obd doctor`: what a user checks when `attach` fails, one line per
//! check — the kernel, the `ublk_drv` module, `/dev/ublk-control`, the
//! driver's feature mask, io_uring, the device limit, the mount namespace.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde::Serialize;

use super::server::CONTROL_PATH;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, with a caveat.
    Warn,
    /// `attach` cannot work until this is fixed.
    Fail,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub check: &'static str,
    /// What was found, and what to do.
    pub detail: String,
    /// The verdict.
    pub status: Status,
}

fn check(check: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        check,
        status,
        detail: detail.into(),
    }
}

/// The ublk feature bits by name (`UBLK_F_*` of the kernel's header).
pub const FEATURES: &[(u64, &str)] = {
    use libublk::sys as s;
    &[
        (s::UBLK_F_SUPPORT_ZERO_COPY as u64, "SUPPORT_ZERO_COPY"),
        (
            s::UBLK_F_URING_CMD_COMP_IN_TASK as u64,
            "URING_CMD_COMP_IN_TASK",
        ),
        (s::UBLK_F_NEED_GET_DATA as u64, "NEED_GET_DATA"),
        (s::UBLK_F_USER_RECOVERY as u64, "USER_RECOVERY"),
        (
            s::UBLK_F_USER_RECOVERY_REISSUE as u64,
            "USER_RECOVERY_REISSUE",
        ),
        (s::UBLK_F_UNPRIVILEGED_DEV as u64, "UNPRIVILEGED_DEV"),
        (s::UBLK_F_CMD_IOCTL_ENCODE as u64, "CMD_IOCTL_ENCODE"),
        (s::UBLK_F_USER_COPY as u64, "USER_COPY"),
        (s::UBLK_F_ZONED as u64, "ZONED"),
        (
            s::UBLK_F_USER_RECOVERY_FAIL_IO as u64,
            "USER_RECOVERY_FAIL_IO",
        ),
        (s::UBLK_F_UPDATE_SIZE as u64, "UPDATE_SIZE"),
        (s::UBLK_F_AUTO_BUF_REG as u64, "AUTO_BUF_REG"),
        (s::UBLK_F_QUIESCE as u64, "QUIESCE"),
        (s::UBLK_F_PER_IO_DAEMON as u64, "PER_IO_DAEMON"),
        (s::UBLK_F_BUF_REG_OFF_DAEMON as u64, "BUF_REG_OFF_DAEMON"),
    ]
};

/// The names of the bits set in `mask` (unknown bits as hex).
pub fn feature_names(mask: u64) -> Vec<String> {
    let mut out: Vec<String> = FEATURES
        .iter()
        .filter(|(b, _)| mask & b != 0)
        .map(|(_, n)| (*n).to_string())
        .collect();
    let known: u64 = FEATURES.iter().map(|(b, _)| b).sum();
    if mask & !known != 0 {
        out.push(format!("{:#x}", mask & !known));
    }
    out
}

/// `(major, minor)` of a kernel release such as `6.12.57+deb13-amd64`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn read_trim(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Runs every check.
pub fn run() -> Vec<Check> {
    let mut out = Vec::new();
    let release = read_trim("/proc/sys/kernel/osrelease").unwrap_or_default();
    let version = kernel_version(&release);
    out.push(match version {
        None => check(
            "kernel",
            Status::Warn,
            format!("release {release:?} not understood"),
        ),
        Some(v) if v < (6, 0) => check(
            "kernel",
            Status::Fail,
            format!("Linux {release}: ublk needs Linux 6.0 or later"),
        ),
        Some(_) => check("kernel", Status::Ok, format!("Linux {release}")),
    });
    out.push(module_check(&release));
    let control = control_check();
    let control_ok = control.status != Status::Fail;
    out.push(control);
    out.push(io_uring_check());
    if control_ok {
        out.push(match libublk::ctrl::UblkCtrl::get_features() {
            Some(mask) if mask & u64::from(libublk::sys::UBLK_F_USER_RECOVERY) == 0 => check(
                "features",
                Status::Warn,
                format!(
                    "{mask:#x}: {} (no USER_RECOVERY: a device dies with its server)",
                    feature_names(mask).join(" ")
                ),
            ),
            Some(mask) => check(
                "features",
                Status::Ok,
                format!("{mask:#x}: {}", feature_names(mask).join(" ")),
            ),
            None => check(
                "features",
                Status::Warn,
                "the driver did not answer GET_FEATURES (an older kernel, or io_uring refused)",
            ),
        });
    }
    out.push(devices_check());
    out.push(namespace_check());
    out
}

fn module_check(release: &str) -> Check {
    if Path::new("/sys/module/ublk_drv").exists() {
        return check("ublk_drv", Status::Ok, "loaded");
    }
    let dep = format!("/lib/modules/{release}/modules.dep");
    let builtin = format!("/lib/modules/{release}/modules.builtin");
    let listed = |p: &str| {
        std::fs::read_to_string(p).is_ok_and(|s| {
            s.lines().any(|l| {
                l.split(':')
                    .next()
                    .is_some_and(|m| m.contains("/ublk_drv.ko"))
            })
        })
    };
    if listed(&dep) {
        check(
            "ublk_drv",
            Status::Fail,
            "not loaded; `modprobe ublk_drv` (as root) loads it",
        )
    } else if listed(&builtin) {
        check("ublk_drv", Status::Ok, "built into the kernel")
    } else {
        check(
            "ublk_drv",
            Status::Fail,
            format!("not loaded, and this kernel ({release}) ships no ublk_drv module (CONFIG_BLK_DEV_UBLK)"),
        )
    }
}

fn control_check() -> Check {
    let md = match std::fs::metadata(CONTROL_PATH) {
        Ok(m) => m,
        Err(_) => {
            return check(
                "control",
                Status::Fail,
                format!("{CONTROL_PATH} is missing (the driver is not loaded)"),
            )
        }
    };
    if !md.file_type().is_char_device() {
        return check(
            "control",
            Status::Fail,
            format!("{CONTROL_PATH} is not a character device"),
        );
    }
    let mode = md.mode() & 0o777;
    let who = format!("mode {mode:03o}, owner {}:{}", md.uid(), md.gid());
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(CONTROL_PATH)
    {
        Err(e) => check(
            "control",
            Status::Fail,
            format!(
                "{CONTROL_PATH}: {} ({who}); run obd as root or give its user read and write access",
                crate::error::os_message(&e)
            ),
        ),
        // Root opens it whatever the mode says; others would not.
        Ok(_) if mode & 0o600 != 0o600 => check(
            "control",
            Status::Warn,
            format!("{CONTROL_PATH}: {who}: only root can use it"),
        ),
        Ok(_) => check("control", Status::Ok, format!("{CONTROL_PATH}: {who}")),
    }
}

fn io_uring_check() -> Check {
    match read_trim("/proc/sys/kernel/io_uring_disabled").as_deref() {
        None | Some("0") => check("io_uring", Status::Ok, "enabled"),
        Some("1") => check(
            "io_uring",
            Status::Warn,
            "kernel.io_uring_disabled=1: only root and the io_uring_group may use it",
        ),
        Some(v) => check(
            "io_uring",
            Status::Fail,
            format!("kernel.io_uring_disabled={v}: ublk servers cannot run (set it to 0)"),
        ),
    }
}

fn devices_check() -> Check {
    let used = std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("ublkc"))
                .count()
        })
        .unwrap_or(0);
    match read_trim("/sys/module/ublk_drv/parameters/ublks_max")
        .and_then(|s| s.parse::<usize>().ok())
    {
        Some(max) if used >= max => check(
            "devices",
            Status::Fail,
            format!("{used} of {max} ublk devices in use (ublk_drv ublks_max={max})"),
        ),
        Some(max) => check(
            "devices",
            Status::Ok,
            format!("{used} of {max} ublk devices in use"),
        ),
        None => check("devices", Status::Ok, format!("{used} ublk devices in use")),
    }
}

fn namespace_check() -> Check {
    let me = std::fs::read_link("/proc/self/ns/mnt");
    let init = std::fs::read_link("/proc/1/ns/mnt");
    match (me, init) {
        (Ok(a), Ok(b)) if a == b => check("mount namespace", Status::Ok, "the host's"),
        (Ok(_), Ok(_)) => check(
            "mount namespace",
            Status::Warn,
            "not PID 1's: a device obd attaches is mounted where its /dev is visible, \
             which may not be this namespace",
        ),
        _ => check(
            "mount namespace",
            Status::Ok,
            "PID 1's namespace cannot be read (not root, or a container)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_and_versions_read_as_the_kernel_writes_them() {
        assert_eq!(
            feature_names(0x4a),
            vec![
                "URING_CMD_COMP_IN_TASK",
                "USER_RECOVERY",
                "CMD_IOCTL_ENCODE"
            ]
        );
        assert_eq!(feature_names(1 << 40), vec!["0x10000000000"]);
        assert_eq!(kernel_version("6.12.57+deb13-amd64"), Some((6, 12)));
        assert_eq!(kernel_version("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(kernel_version("x"), None);
    }
}
