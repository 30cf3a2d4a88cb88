//! The few process-level system calls attaching needs: blocking and waiting
//! for signals, forking the background server, pointing stdio elsewhere.
//! This is the only place in obd with `unsafe`; every block says why it is
//! sound.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Duration;

/// The signals that stop a server.
pub const STOP_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn sigset(signals: &[i32]) -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t.
    if unsafe { libc::sigemptyset(&mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for &s in signals {
        // SAFETY: as above; `s` is a signal number (invalid ones give EINVAL).
        if unsafe { libc::sigaddset(&mut set, s) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(set)
}

/// Signals blocked in the calling thread (and in every thread it spawns
/// from now on) until this is dropped, which restores the previous mask.
pub struct BlockedSignals {
    old: libc::sigset_t,
    set: libc::sigset_t,
}

impl BlockedSignals {
    /// Blocks `signals` in the calling thread.
    ///
    /// # Errors
    /// The `pthread_sigmask` error.
    pub fn block(signals: &[i32]) -> io::Result<Self> {
        let set = sigset(signals)?;
        // SAFETY: zeroed sigset_t is valid storage for the old mask.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers refer to valid sigset_t values.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(BlockedSignals { old, set })
    }

    /// Waits up to `timeout` for one of the blocked signals; returns it, or
    /// `None` when the time is up.
    pub fn wait(&self, timeout: Duration) -> Option<i32> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `set` and `ts` are valid; a null siginfo pointer is allowed.
        let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        (sig > 0).then_some(sig)
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `block` in this thread.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}

/// Which side of a [`fork`] the caller is on.
pub enum Forked {
    /// The original process; the child's pid.
    Parent(i32),
    /// The new process.
    Child,
}

/// Forks the process.
///
/// # Safety
/// The caller must be single-threaded: only the calling thread exists in
/// the child, so locks held by other threads would stay locked forever.
///
/// # Errors
/// The `fork` error.
pub unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller guarantees there are no other threads.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// A pipe, both ends close-on-exec: `(read, write)`.
///
/// # Errors
/// The `pipe2` error.
pub fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// Points file descriptor `target` (0, 1 or 2) at `file`.
///
/// # Errors
/// The `dup2` error.
pub fn redirect(file: &File, target: i32) -> io::Result<()> {
    // SAFETY: both descriptors are valid; dup2 atomically replaces `target`,
    // which the standard streams keep using by number.
    if unsafe { libc::dup2(file.as_raw_fd(), target) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_signal_is_collected_by_wait() {
        // Run in a fresh thread so the mask change cannot leak into others.
        std::thread::spawn(|| {
            let b = BlockedSignals::block(&[libc::SIGUSR2]).unwrap();
            assert_eq!(b.wait(Duration::from_millis(10)), None);
            // SAFETY: sending a blocked signal to this very thread.
            unsafe {
                libc::pthread_kill(libc::pthread_self(), libc::SIGUSR2);
            }
            assert_eq!(b.wait(Duration::from_secs(5)), Some(libc::SIGUSR2));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn pipe_carries_bytes() {
        use std::io::{Read, Write};
        let (mut r, mut w) = pipe().unwrap();
        w.write_all(b"live 3\n").unwrap();
        drop(w);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "live 3\n");
    }
}
