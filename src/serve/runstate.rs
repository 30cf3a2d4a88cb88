//! Run-state records of attached devices: one JSON file per device in the
//! run directory (`$OBD_RUN_DIR`, default `/run/obd`), written atomically by
//! the server once the device is live and removed when it stops. `obd list`
//! and `obd detach` read them and check them against the kernel's view
//! (`/sys/class/ublk-char`) and the process table.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::atomic::AtomicFile;

/// Default run directory.
pub const DEFAULT_RUN_DIR: &str = "/run/obd";

/// Where ublk character devices show up in sysfs.
const SYS_UBLK_CHAR: &str = "/sys/class/ublk-char";

/// The run directory: `$OBD_RUN_DIR` or [`DEFAULT_RUN_DIR`].
pub fn run_dir() -> PathBuf {
    std::env::var_os("OBD_RUN_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR))
}

/// Makes sure the run directory can be trusted, creating it (mode 0700)
/// when it does not exist: a directory that is a symbolic link, is owned by
/// another user or is writable by others could hold forged records (which
/// would make `detach` signal any process) and is refused.
///
/// # Errors
/// [`Error::Invalid`] for an untrustworthy directory; I/O errors.
pub fn ensure_run_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.symlink_metadata().is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::file(dir, "create", e))?;
    }
    check_run_dir(dir)
}

/// Checks an existing run directory (see [`ensure_run_dir`]); a missing one
/// is fine (it holds no records).
///
/// # Errors
/// [`Error::Invalid`] for an untrustworthy directory.
pub fn check_run_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = match dir.symlink_metadata() {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::file(dir, "read", e)),
    };
    let me = rustix::process::geteuid().as_raw();
    let why = if !m.is_dir() {
        Some("is not a directory (a symbolic link?)".to_string())
    } else if m.uid() != me {
        Some(format!("is owned by uid {}, not {me}", m.uid()))
    } else if m.mode() & 0o022 != 0 {
        Some(format!(
            "is writable by others (mode {:o})",
            m.mode() & 0o7777
        ))
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::invalid(
            "run directory",
            format!(
                "{} {why}: its records cannot be trusted (use a directory of your own, \
                 mode 0700, or set OBD_RUN_DIR)",
                dir.display()
            ),
        )),
        None => Ok(()),
    }
}

/// The writable top layer of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upper {
    /// Data file.
    pub data: String,
    /// Index file.
    pub index: String,
}

/// Ids of NBD exports start here: ublk device ids stay below it (the
/// kernel's limit is 2^20 devices), so both share one run directory.
pub const NBD_ID_BASE: u32 = 1 << 20;

fn ublk() -> String {
    "ublk".into()
}

/// What the server records about a live device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// What serves it: `ublk` (a block device) or `nbd` (an export).
    #[serde(default = "ublk")]
    pub transport: String,
    /// Device id: the ublk device id, or [`NBD_ID_BASE`] + n for export `nbdN`.
    pub id: u32,
    /// Block device path.
    pub device: String,
    /// Character device path.
    pub char_device: String,
    /// Server process id.
    pub pid: u32,
    /// The server's start time (`/proc/<pid>/stat` field 22), which tells
    /// it apart from a later process with a reused pid.
    pub pid_start: u64,
    /// Device size in bytes.
    pub size: u64,
    /// Read-only device.
    pub read_only: bool,
    /// Hardware queues.
    pub queues: u16,
    /// Queue depth.
    pub depth: u16,
    /// Layer files, bottom first.
    pub layers: Vec<String>,
    /// Writable top layer.
    pub upper: Option<Upper>,
    /// Image config the device was attached from.
    pub config: Option<String>,
    /// The server's log file (background servers).
    pub log: Option<String>,
    /// Seconds since the Unix epoch when the device went live.
    pub started: u64,
}

impl Record {
    /// Path of the record of device `id` in `dir`.
    pub fn path(dir: &Path, id: u32) -> PathBuf {
        dir.join(format!("{id}.json"))
    }

    /// Writes the record (temporary file, fsync, rename).
    ///
    /// # Errors
    /// I/O errors of the run directory.
    pub fn save(&self, dir: &Path) -> Result<()> {
        ensure_run_dir(dir)?;
        let mut f = AtomicFile::create(&Self::path(dir, self.id), true)?;
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid("run-state record", e))?;
        f.file_mut()
            .write_all(format!("{text}\n").as_bytes())
            .map_err(|e| Error::io("run-state record", 0, e))?;
        f.commit()
    }

    /// Reads the record of device `id`, if there is one.
    ///
    /// # Errors
    /// I/O errors other than a missing file; unparsable records.
    pub fn load(dir: &Path, id: u32) -> Result<Option<Self>> {
        let p = Self::path(dir, id);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("run-state record", 0, e)),
        };
        let r: Self = serde_json::from_str(&text)
            .map_err(|e| Error::invalid("run-state record", format!("{}: {e}", p.display())))?;
        // A record is named after its device: one that says otherwise was
        // not written by obd.
        if r.id != id {
            return Err(Error::invalid(
                "run-state record",
                format!("{} names device {}", p.display(), r.id),
            ));
        }
        Ok(Some(r))
    }

    /// Removes the record of device `id` (a missing one is fine).
    pub fn remove(dir: &Path, id: u32) {
        let _ = std::fs::remove_file(Self::path(dir, id));
        crate::serve::stats::remove(dir, id);
    }

    /// All records in `dir`, by id; unreadable ones are skipped.
    pub fn load_all(dir: &Path) -> Vec<Self> {
        let mut out: Vec<Self> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id: u32 = name.strip_suffix(".json")?.parse().ok()?;
                Self::load(dir, id).ok().flatten()
            })
            .collect();
        out.sort_by_key(|r| r.id);
        out
    }

    /// True while the recorded server process runs.
    pub fn server_alive(&self) -> bool {
        process_start(self.pid) == Some(self.pid_start)
    }

    /// True when the recorded process is running and is an obd server (its
    /// executable is named as this one, and its command line is an `attach`):
    /// only then may it be signalled. A forged record naming another
    /// process fails this.
    pub fn server_is_obd(&self) -> bool {
        if !self.server_alive() {
            return false;
        }
        let name_of = |p: &Path| p.file_name().map(|n| n.to_owned());
        let exe = std::fs::read_link(format!("/proc/{}/exe", self.pid)).ok();
        let ours = std::env::current_exe().ok();
        // A deleted (upgraded) binary shows as "obd (deleted)".
        let exe_name = exe.as_deref().and_then(name_of).map(|n| {
            n.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string()
        });
        let our_name = ours
            .as_deref()
            .and_then(name_of)
            .map(|n| n.to_string_lossy().into_owned());
        if exe_name.is_none() || exe_name != our_name {
            return false;
        }
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        cmdline
            .split(|&b| b == 0)
            .any(|a| a == b"attach" || a == b"serve")
    }
}

/// The start time of a running (not zombie) process, from
/// `/proc/<pid>/stat`.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything;
    // the fields after the last ')' are plain numbers.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); starttime is field 22.
    match *fields.first()? {
        "Z" | "X" | "x" => None,
        _ => fields.get(19)?.parse().ok(),
    }
}

/// Ids of the ublk devices the kernel has now.
pub fn kernel_devices() -> Vec<u32> {
    let mut ids: Vec<u32> = std::fs::read_dir(SYS_UBLK_CHAR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("ublkc")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// True while the kernel has ublk device `id`.
pub fn device_exists(id: u32) -> bool {
    Path::new(SYS_UBLK_CHAR).join(format!("ublkc{id}")).exists()
        || Path::new(&format!("/dev/ublkc{id}")).exists()
}

/// The state of an attached device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Served by a running obd.
    Live,
    /// The device is there but its server is gone (killed): only
    /// `obd detach --force` removes it.
    Dead,
    /// The server runs but the device is gone: it is shutting down.
    Stopping,
    /// A ublk device that obd did not create (or whose record is lost).
    Foreign,
}

impl State {
    /// The word `obd list` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Live => "live",
            State::Dead => "dead",
            State::Stopping => "stopping",
            State::Foreign => "foreign",
        }
    }
}

/// One row of `obd list`.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// `ublk` or `nbd`.
    pub transport: String,
    /// Device id (see [`Record::id`]).
    pub id: u32,
    /// Block device path, or the export's NBD URI.
    pub device: String,
    /// State.
    pub state: State,
    /// Server process id.
    pub pid: Option<u32>,
    /// Device size in bytes.
    pub size: Option<u64>,
    /// Read-only device.
    pub read_only: Option<bool>,
    /// Layer files, bottom first.
    pub layers: Vec<String>,
    /// Writable top layer.
    pub upper: Option<Upper>,
    /// The server's log file.
    pub log: Option<String>,
}

/// The attached devices: obd's records checked against the kernel and the
/// process table, plus ublk devices obd has no record of. Records of
/// devices that are gone together with their server are deleted.
pub fn list(dir: &Path) -> Vec<Entry> {
    let kernel = kernel_devices();
    let mut out = Vec::new();
    for r in Record::load_all(dir) {
        let alive = r.server_alive();
        // An NBD export exists while its server runs.
        let exists = if r.transport == "nbd" {
            alive
        } else {
            kernel.contains(&r.id) || device_exists(r.id)
        };
        let state = match (alive, exists) {
            (true, true) => State::Live,
            (false, true) => State::Dead,
            (true, false) => State::Stopping,
            (false, false) => {
                Record::remove(dir, r.id);
                continue;
            }
        };
        out.push(Entry {
            transport: r.transport,
            id: r.id,
            device: r.device,
            state,
            pid: Some(r.pid),
            size: Some(r.size),
            read_only: Some(r.read_only),
            layers: r.layers,
            upper: r.upper,
            log: r.log,
        });
    }
    for id in kernel {
        if !out.iter().any(|e| e.id == id) {
            out.push(Entry {
                transport: "ublk".into(),
                id,
                device: format!("/dev/ublkb{id}"),
                state: State::Foreign,
                pid: None,
                size: None,
                read_only: None,
                layers: Vec::new(),
                upper: None,
                log: None,
            });
        }
    }
    out.sort_by_key(|e| e.id);
    out
}

/// The name `obd detach` and `obd stats` take for device `id`: `nbdN` for
/// an NBD export, the ublk device number otherwise (what [`parse_device`]
/// reads back).
pub fn device_name(id: u32) -> String {
    if id >= NBD_ID_BASE {
        format!("nbd{}", id - NBD_ID_BASE)
    } else {
        id.to_string()
    }
}

/// Parses a device given as `N`, `ublkbN`, `ublkcN`, `/dev/ublkbN` or
/// `/dev/ublkcN`, or an NBD export as `nbdN`.
///
/// # Errors
/// [`Error::Invalid`] for anything else.
pub fn parse_device(s: &str) -> Result<u32> {
    if let Some(n) = s.strip_prefix("nbd").and_then(|n| n.parse::<u32>().ok()) {
        return n
            .checked_add(NBD_ID_BASE)
            .ok_or_else(|| Error::invalid("device", format!("{s:?} is not an NBD export number")));
    }
    let t = s.strip_prefix("/dev/").unwrap_or(s);
    let digits = t
        .strip_prefix("ublkb")
        .or_else(|| t.strip_prefix("ublkc"))
        .unwrap_or(t);
    digits.parse().map_err(|_| {
        Error::invalid(
            "device",
            format!(
                "{s:?} is not a device (give an id such as 0, /dev/ublkb0, or nbd0 for an NBD export)"
            ),
        )
    })
}

/// Polls `done` every 50 ms until it is true (returns true) or `timeout`
/// has passed (returns false).
pub(crate) fn wait_until(timeout: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u32) -> Record {
        Record {
            transport: "ublk".into(),
            id,
            device: format!("/dev/ublkb{id}"),
            char_device: format!("/dev/ublkc{id}"),
            pid: std::process::id(),
            pid_start: process_start(std::process::id()).unwrap(),
            size: 1 << 30,
            read_only: true,
            queues: 1,
            depth: 128,
            layers: vec!["/x/L0.commit".into()],
            upper: None,
            config: None,
            log: None,
            started: 0,
        }
    }

    #[test]
    fn records_round_trip_and_list_drops_stale_ones() {
        let dir = tempfile::tempdir().unwrap();
        let r = record(4000);
        r.save(dir.path()).unwrap();
        assert_eq!(Record::load(dir.path(), 4000).unwrap(), Some(r.clone()));
        assert_eq!(Record::load(dir.path(), 4001).unwrap(), None);
        assert!(r.server_alive());
        // This test's process is alive but no such ublk device exists.
        let l = list(dir.path());
        let e = l.iter().find(|e| e.id == 4000).unwrap();
        assert_eq!(e.state, State::Stopping);
        // A dead server without a device: the record goes away.
        let mut dead = record(4002);
        dead.pid_start += 1;
        dead.save(dir.path()).unwrap();
        assert!(!dead.server_alive());
        assert!(list(dir.path()).iter().all(|e| e.id != 4002));
        assert_eq!(Record::load(dir.path(), 4002).unwrap(), None);
        Record::remove(dir.path(), 4000);
        assert!(Record::load_all(dir.path()).is_empty());
    }

    #[test]
    fn device_names() {
        assert_eq!(parse_device("3").unwrap(), 3);
        assert_eq!(parse_device("/dev/ublkb12").unwrap(), 12);
        assert_eq!(parse_device("ublkc7").unwrap(), 7);
        assert!(parse_device("/dev/sda").is_err());
        assert!(parse_device("ublkb").is_err());
    }

    #[test]
    fn process_start_of_self_and_of_nobody() {
        assert!(process_start(std::process::id()).is_some());
        assert_eq!(process_start(u32::MAX), None);
    }
}
