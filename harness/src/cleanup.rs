//! Nothing outlives a killed test: on SIGTERM or SIGINT (nextest's timeout, Ctrl-C) the
//! registered QEMU processes are killed and the registered temp directories removed before
//! the process exits. (SIGKILL is covered by PR_SET_PDEATHSIG on QEMU; temp dirs then remain
//! under /tmp/sxt-*.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, Once};

static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static PIDS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
static INSTALL: Once = Once::new();

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    let byte = sig as u8;
    // SAFETY: write(2) is async-signal-safe; the handler does nothing else.
    unsafe {
        libc::write(fd, (&byte as *const u8).cast(), 1);
    }
}

/// Installs the handlers once per process; later calls do nothing.
pub fn install() {
    INSTALL.call_once(|| {
        let mut fds = [0i32; 2];
        // SAFETY: plain syscalls on a local array; failure leaves the default handlers.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return;
        }
        PIPE_WRITE.store(fds[1], Ordering::Relaxed);
        let read_fd = fds[0];
        std::thread::spawn(move || {
            let mut byte = 0u8;
            // SAFETY: reading one byte from our own pipe into a local.
            let n = unsafe { libc::read(read_fd, (&mut byte as *mut u8).cast(), 1) };
            if n == 1 {
                clean();
                // SAFETY: exiting without unwinding, as the default action would.
                unsafe { libc::_exit(128 + i32::from(byte)) };
            }
        });
        for sig in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: installing a handler that only calls write(2).
            unsafe {
                libc::signal(sig, on_signal as *const () as libc::sighandler_t);
            }
        }
    });
}

fn clean() {
    for pid in PIDS.lock().map(|p| p.clone()).unwrap_or_default() {
        // SAFETY: signalling a child we started.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    for dir in DIRS.lock().map(|d| d.clone()).unwrap_or_default() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

pub fn register_dir(p: &Path) {
    if let Ok(mut d) = DIRS.lock() {
        d.push(p.to_path_buf());
    }
}

pub fn unregister_dir(p: &Path) {
    if let Ok(mut d) = DIRS.lock() {
        d.retain(|x| x != p);
    }
}

pub fn register_pid(pid: u32) {
    if let Ok(mut p) = PIDS.lock() {
        p.push(pid as i32);
    }
}

pub fn unregister_pid(pid: u32) {
    if let Ok(mut p) = PIDS.lock() {
        p.retain(|x| *x != pid as i32);
    }
}
