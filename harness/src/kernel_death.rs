//! The guest kernel's own words for its crash, read off the serial console.
//!
//! Under TCG with two vCPUs, QEMU 7.2 sometimes runs a stale translation of kernel text the
//! other vCPU just patched (a static key flipping; seen twice in the page allocator, most
//! likely `cpusets_enabled()` as a `Delegate=yes` unit such as containerd's makes the first
//! cpuset cgroup), and the kernel dies with "Oops: int3" and "Fatal exception in
//! interrupt". No image is involved, so such a death is a
//! harness error that a rerun may clear, never an image's failure. A panic because init
//! died ("Attempted to kill init") is different: userspace did that, possibly the image,
//! so it is not counted here.

/// Lines that mean the kernel itself crashed (x86-64 and arm64 wording).
const WORDS: &[&str] = &[
    "Oops:",
    "BUG: unable to handle",
    "BUG: kernel NULL pointer",
    "kernel BUG at",
    "Internal error: Oops",
    "Unable to handle kernel",
    "Kernel panic - not syncing",
];

/// The panic of a kernel whose init exited: userspace's doing, not the kernel's.
const INIT_DIED: &str = "Attempted to kill init";

/// The first console line where the guest's kernel crashed, if it did.
pub fn line(console: &str) -> Option<&str> {
    console
        .lines()
        .map(str::trim)
        .find(|l| !l.contains(INIT_DIED) && WORDS.iter().any(|w| l.contains(w)))
}

#[cfg(test)]
mod tests {
    use super::line;

    #[test]
    fn a_tcg_int3_oops_is_a_kernel_death() {
        let console = "SYSEXT-TEST-GUEST-READY\n[   46.271336] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n[   46.4] Kernel panic - not syncing: Fatal exception in interrupt\n";
        assert_eq!(
            line(console),
            Some("[   46.271336] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI")
        );
    }

    #[test]
    fn a_panic_line_alone_still_names_the_death_when_the_oops_scrolled_away() {
        let tail = "[   17.884676] CR2: 0000556f76f30588\n[   17.884676] Kernel panic - not syncing: Fatal exception in interrupt\n";
        assert_eq!(
            line(tail),
            Some("[   17.884676] Kernel panic - not syncing: Fatal exception in interrupt")
        );
    }

    #[test]
    fn init_dying_and_a_failed_unit_are_not_kernel_deaths() {
        assert_eq!(
            line("[ 3.2] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"),
            None
        );
        assert_eq!(
            line("[ 5.1] systemd[1]: Failed to start hello.service.\n"),
            None
        );
        assert_eq!(
            line("[ 9.0] traps: crashy[261] general protection fault ip:401000 sp:0 error:0"),
            None
        );
    }

    #[test]
    fn a_panic_of_its_own_is_a_kernel_death() {
        let console = "[ 30.1] sysrq: Trigger a crash\n[ 30.1] Kernel panic - not syncing: sysrq triggered crash\n";
        assert!(line(console).is_some_and(|l| l.contains("sysrq triggered crash")));
    }

    #[test]
    fn an_arm64_oops_is_a_kernel_death() {
        let console = "[ 12.0] Unable to handle kernel paging request at virtual address dead000000000108\n[ 12.0] Internal error: Oops: 0000000096000044 [#1] PREEMPT SMP\n";
        assert!(line(console).is_some_and(|l| l.contains("Unable to handle kernel")));
    }
}
