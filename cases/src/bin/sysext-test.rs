//! `sysext-test`: build extension images and check them against the Extension Image rules.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use sysext_builder::Arch;
use sysext_builder::build::{self, Format};
use sysext_builder::guest::Profile;
use sysext_builder::spec::Compression;
use sysext_cases::lint::{self, LintError, Linter, TargetSpec};
use sysext_cases::report;

#[derive(Parser)]
#[command(
    name = "sysext-test",
    version,
    about = "Build systemd system extensions and check them before they ship",
    long_about = "Build systemd system extensions (sysexts) the way the Flatcar sysext bakery publishes them, and check \
                  images against the Extension Image rules before any host tries to merge them.\n\n\
                  Exit status: 0 clean, 1 findings of severity error, 2 usage or I/O problems.",
    after_help = "Examples:\n  sysext-test build fixtures/extensions/busybox.toml --arch all -o out/\n  sysext-test lint out/\n  sysext-test lint --format json docker-28.0.4-x86-64.raw"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build NAME-VERSION-ARCH.raw, SHA256SUMS and NAME.conf from an extension spec (TOML).
    #[command(
        after_help = "The output directory is a bakery-style release directory: building the same spec for \
                            x86-64 and arm64 into one directory gives one SHA256SUMS with both images."
    )]
    Build(BuildArgs),
    /// Check images, directory images or release directories against the Extension Image rules.
    #[command(
        after_help = "A release directory (holding *.raw and SHA256SUMS) is checked as a whole: each image, \
                            SHA256SUMS against the files, and each transfer file against the published names."
    )]
    Lint(LintArgs),
    /// Boot guests and run the VM cases (merge, binaries, services, unmerge) on your images.
    #[command(
        after_help = "Each case restores a saved Debian trixie guest (systemd 257), installs the image \
                            the bakery way (/opt/extensions/NAME/FILE plus /etc/extensions/NAME.raw) and checks it. \
                            The first run builds the guest and saves its booted state under the cache \
                            ($XDG_CACHE_HOME/sysext-test, or SYSEXT_TEST_CACHE); later runs restore it in about \
                            2 s (`sysext-test guest status`). A failed case keeps console, journal and sysext status \
                            under target/sysext-test/artifacts/. When the merge is refused, the other cases are \
                            not run. With --via baked (or all) the boot case bakes the image (and NAME.conf beside \
                            it) into a copy of the flatcar-shaped guest's disk (Flatcar's partitions, /usr/sbin -> bin, \
                            ID=flatcar) and cold-boots it: merged at boot, its units up, its commands working, \
                            nothing failed, no new boot errors, nothing of the base /usr hidden. With --via ignition \
                            the ignition case serves the image from a local mirror and has Ignition fetch it at \
                            the flatcar-shaped guest's first boot (the config `sysext-test ignition` prints). Exit status: 0 all \
                            passed, 1 a case failed or did not run, 2 the harness broke (no verdict). Needs root, \
                            QEMU and the guest (bash .ci/setup).\n\n\
                            Examples:\n  sysext-test run docker-28.0.4-x86-64.raw --manifest docker-test.toml\n  \
                            sysext-test run --arch arm64 --case merge --format json my.raw\n  \
                            sysext-test run --via all my-1.0-x86-64.raw"
    )]
    Run {
        /// Extension images (.raw), or a bakery release store (a folder per release tag as
        /// `gh release download` leaves it, or a flat folder with SHA256SUMS): its digests
        /// are verified first, then every image runs.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Guest architecture; default: from the bakery-style file name, else x86-64.
        #[arg(long, value_parser = parse_arch)]
        arch: Option<Arch>,
        /// A test manifest (TOML: commands = [{ run, expect }], services, waiting, ports,
        /// creates, ...); default: the bundled one for the extension's name, if any
        /// (fixtures/manifests/NAME.toml, SYSEXT_TEST_MANIFESTS).
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// Run only these cases: merge, binaries, services, unmerge, boot, ignition
        /// (repeatable); default: all the --via ways select.
        #[arg(long = "case", value_name = "CASE", value_parser = parse_case)]
        cases: Vec<sysext_cases::vm::Case>,
        /// How the guest consumes the image: runtime (installed into a running guest and
        /// merged with systemd-sysext merge: the merge, binaries, services and unmerge
        /// cases), baked (baked into the flatcar-shaped guest's disk and merged at boot:
        /// the boot case), ignition (fetched from a local mirror by Ignition at the
        /// flatcar-shaped guest's first boot: the ignition case), or all.
        #[arg(long, default_value = "runtime", value_parser = ["runtime", "baked", "ignition", "all"])]
        via: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Build fixtures (specs with an [expect] verdict) and check each gets the lint verdict it expects.
    #[command(
        after_help = "Each spec is built for its arches into OUTPUT/<fixture>/<arch>/ (a release directory you \
                            can look at or lint yourself) and linted; a fixture passes when lint reports exactly the \
                            rules its [expect] lists (the broken-* fixtures exist to be refused, for one reason each). \
                            Prints the verdict table. Exit status: 0 every fixture got its verdict, 1 one did not, 2 \
                            bad input.\n\n\
                            Example:\n  sysext-test check fixtures/extensions/*.toml"
    )]
    Check {
        /// Fixture specs (TOML with an [expect] table; none means: no finding at all).
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Where the builds go.
        #[arg(short, long, default_value = "target/fixtures-release")]
        output: PathBuf,
        #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
        format: ReportFormat,
    },
    /// Merge test results (nextest JUnit from any number of partitions, or `run --format json`) into one verdict.
    #[command(
        after_help = "The verdict is a table: one row per extension, version and arch, one column per case \
                            family (store, lint, vm, boot, ignition, update), each cell the count of its tests or \
                            the first failure (with where its artifacts went) listed below the table. Green only \
                            when every cell is: a failed or skipped test, a failed host test, or a test reported \
                            by two inputs (overlapping partitions) makes it red. Exit status: 0 green, 1 red, 2 \
                            unreadable input.\n\n\
                            Examples:\n  cargo nextest run --profile ci --partition hash:1/3   # and 2/3, 3/3 elsewhere\n  \
                            sysext-test report part-*/junit.xml\n  \
                            sysext-test report --summary \"$GITHUB_STEP_SUMMARY\" target/nextest/ci/junit.xml\n  \
                            sysext-test run --format json my.raw > run.json && sysext-test report run.json"
    )]
    Report {
        /// JUnit XML files (target/nextest/<profile>/junit.xml) or `sysext-test run --format json` output.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
        format: ReportFormat,
        /// Also append the Markdown verdict to this file (a GitHub job summary).
        #[arg(long, value_name = "FILE")]
        summary: Option<PathBuf>,
    },
    /// Copy an OS disk image with extensions baked in, as an ordinary user (no root, loop or mount).
    #[command(
        after_help = "Finds the ROOT (and, with --install-to oem, OEM) partition by its GPT label, \
                            the way it is labelled on Flatcar and on the flatcar-shaped guest, and writes into \
                            its ext4 with debugfs: the image at /opt/extensions/NAME/NAME-VERSION-ARCH.raw (where \
                            its sysupdate config looks for it; --install-to oem: /oem/extensions/NAME/), the \
                            symlink /etc/extensions/NAME.raw, and /etc/sysupdate.NAME.d/NAME.conf from --conf or \
                            NAME.conf beside the image. Every file is read back and compared before OUT appears \
                            (written to a temp name, then renamed); the base is never modified. A qcow2 base is \
                            converted; OUT is raw. Exit status: 0 baked, 2 bad input or a missing tool.\n\n\
                            Examples:\n  sysext-test bake docker-28.0.4-x86-64.raw -o flatcar-docker.img\n  \
                            sysext-test bake --arch arm64 --base flatcar_production_image.bin k3s-v1.31.4+k3s1-arm64.raw -o k3s.img"
    )]
    Bake {
        /// Extension images, NAME-VERSION-ARCH.raw (one per extension).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Architecture of the disk; default: from the images' file names.
        #[arg(long, value_parser = parse_arch)]
        arch: Option<Arch>,
        /// The disk to start from (GPT, raw or qcow2); default: the cached flatcar-shaped
        /// guest's disk for the arch.
        #[arg(long, value_name = "DISK")]
        base: Option<PathBuf>,
        /// Where the images go: root (partition ROOT) or oem (partition OEM, ext4 only).
        #[arg(long, default_value = "root", value_parser = parse_install_to)]
        install_to: sysext_builder::bake::InstallTo,
        /// A sysupdate config NAME.conf to install for extension NAME (repeatable).
        #[arg(long = "conf", value_name = "FILE")]
        confs: Vec<PathBuf>,
        /// The baked disk to write (raw).
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Print the Ignition config that provisions an extension at first boot (the bakery's Butane example).
    #[command(
        after_help = "The config (Ignition spec 3.3.0, JSON) fetches IMAGE from MIRROR into \
                            /opt/extensions/NAME/ with its SHA-256 checked by Ignition, links \
                            /etc/extensions/NAME.raw to it, fetches NAME.conf and noop.conf for sysupdate, \
                            enables systemd-sysupdate.timer and adds the systemd-sysupdate.service drop-in that \
                            updates NAME and then flags a reboot (reboot) or runs systemd-sysext refresh \
                            (refresh). Pass it to a Flatcar VM with \
                            -fw_cfg name=opt/org.flatcar-linux/config,file=FILE.\n\n\
                            Examples:\n  sysext-test ignition docker-28.0.4-x86-64.raw > docker.ign\n  \
                            sysext-test ignition --mirror http://10.0.2.2:8080/extensions --update-drop-in refresh my-1.0-x86-64.raw"
    )]
    Ignition {
        /// The extension image, NAME-VERSION-ARCH.raw (read for its name and SHA-256).
        image: PathBuf,
        /// Where the image, NAME.conf and noop.conf are served.
        #[arg(long, default_value = "https://extensions.flatcar.org/extensions")]
        mirror: String,
        /// What the sysupdate drop-in does after an update: reboot or refresh.
        #[arg(long, default_value = "reboot")]
        update_drop_in: sysext_builder::ignition::UpdateDropIn,
        /// Write the config here (temp file, then rename) instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Serve a release directory under the paths extensions.flatcar.org uses, for sysupdate.
    #[command(
        after_help = "Serves DIR (what `sysext-test build -o DIR` writes: NAME-VERSION-ARCH.raw, SHA256SUMS, \
                            NAME.conf) on 127.0.0.1 the way the bakery's redirector does: /extensions/NAME/SHA256SUMS, \
                            /extensions/NAME/NAME-VERSION-ARCH.raw, /extensions/NAME.conf, /extensions/SHA256SUMS. \
                            A QEMU guest with user networking reaches it at 10.0.2.2; build with \
                            `--hub http://10.0.2.2:PORT/extensions` so the transfer file points at it. \
                            Prints one line per request (JSON lines with --format json); Ctrl-C stops it."
    )]
    Mirror {
        /// Release directory to serve.
        dir: PathBuf,
        /// Port on 127.0.0.1; 0 lets the OS pick a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Mutation-fuzz lint: break real images and a release directory byte by byte, lint each.
    #[command(
        after_help = "Builds the fuzz subjects (hello-service as gzip squashfs, as erofs and as a release \
                            directory; busybox as xz squashfs), then flips bits, truncates, splices and zeroes \
                            their bytes and lints every mutant with a deadline. A mutant fails the run when lint \
                            panics, hangs, errors, or reports nothing although the format's own tool (unsquashfs, \
                            fsck.erofs) cannot read it back. Prints the seed, a progress line every 10 s and each \
                            failure with the command that replays it; failing mutants are kept under \
                            WORKDIR/failures/. Exit status: 0 no failure, 1 failures, 2 could not run.\n\n\
                            Examples:\n  sysext-test fuzz --duration 10m\n  sysext-test fuzz --seed 7 --replay 1234"
    )]
    Fuzz {
        /// How long to run: 90s, 10m, 1h.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Seed of the mutants (default: from the clock; printed either way).
        #[arg(long)]
        seed: Option<u64>,
        /// Lint only mutant N of --seed, to replay a reported failure.
        #[arg(long, value_name = "N", requires = "seed")]
        replay: Option<u64>,
        /// Stop after this many mutants.
        #[arg(long)]
        mutants: Option<u64>,
        /// Fuzz only this subject (repeatable), e.g. erofs:hello-service.
        #[arg(long = "subject", value_name = "SUBJECT")]
        subjects: Vec<String>,
        /// Deadline for linting one mutant; over it counts as a hang.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        timeout: std::time::Duration,
        /// Scratch directory; failing mutants are kept under its failures/.
        #[arg(long, default_value = "target/sysext-test/fuzz")]
        workdir: PathBuf,
    },
    /// Build (or reuse) the cached Debian trixie guest images the VM cases boot.
    #[command(subcommand)]
    Guest(GuestCommand),
    /// Measure lint against unsquashfs-then-check, and build against mksquashfs.
    #[command(
        after_help = "Needs squashfs-tools and /usr/bin/time (bash .ci/setup installs them). Takes a few \
                            minutes; prints a markdown table (or JSON) to paste into the README."
    )]
    Bench {
        /// Host directory whose files fill the benchmark image.
        #[arg(long, default_value = "/usr/lib")]
        source: PathBuf,
        /// About how many files to take (every k-th file, sorted by path).
        #[arg(long, default_value_t = 20_000)]
        files: usize,
        /// Skip files larger than this many MiB.
        #[arg(long, default_value_t = 32)]
        max_file_mib: u64,
        /// Runs per measurement; the median counts.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Scratch directory for the staged tree and images.
        #[arg(long, default_value = "target/sysext-test/bench")]
        workdir: PathBuf,
        /// Measure guests instead: cold boot to SSH and snapshot restore to SSH, per arch.
        #[arg(long)]
        vm: bool,
        /// Where the peer extracts to (a tmpfs).
        #[arg(long, default_value = "/dev/shm")]
        tmpfs: PathBuf,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
}

#[derive(Subcommand)]
enum GuestCommand {
    /// Show the cached guests' saved states and whether the next run would restore them.
    #[command(
        after_help = "A saved state is reused while the guest recipe, the QEMU version, the accelerator, \
                            the QEMU and kernel command lines and the guest's SSH key are unchanged; any change \
                            makes the next run cold-boot and save a new one."
    )]
    Status {
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Remove every saved guest state (the guests themselves stay cached).
    Clean,
    /// Restore the saved guest and run commands in it as root, each argument one command
    /// (after `--`), printing each one's output, exit status and time.
    #[command(
        after_help = "What a case sees, to poke at by hand: the same saved state, the same \
                            restore, a throwaway overlay (nothing you do is kept). Exit status: 0 when \
                            every command exited 0, 1 otherwise, 2 when the guest could not be restored.

Examples:
  sysext-test guest exec -- 'systemd-sysext status' 'systemd-analyze time'
  sysext-test guest exec --arch arm64 --upload my.raw:/etc/extensions/my.raw -- 'systemd-sysext merge'"
    )]
    Exec {
        /// x86-64 or arm64.
        #[arg(long, value_parser = parse_arch, default_value = "x86-64")]
        arch: Arch,
        /// debian or flatcar-shaped (see `guest build --help`).
        #[arg(long, default_value = "debian")]
        profile: Profile,
        /// Copy a host file into the guest first (LOCAL:REMOTE; repeatable).
        #[arg(long, value_name = "LOCAL:REMOTE")]
        upload: Vec<String>,
        /// Commands, run one after another in the guest's shell.
        #[arg(last = true, required = true)]
        commands: Vec<String>,
    },
    /// Download, verify (gpgv, Flatcar's image signing key) and cache a real Flatcar release.
    #[command(
        after_help = "Fetches flatcar_production_qemu_uefi_image.img.bz2 and version.txt with their \
                            signatures from https://<channel>.release.flatcar-linux.net/<board>/<version>/, \
                            checks both against the keyring (SYSEXT_TEST_FLATCAR_KEYRING, default \
                            <cache>/flatcar/flatcar-signing-key.gpg: `gpg --dearmor` of \
                            https://www.flatcar.org/security/image-signing-key/Flatcar_Image_Signing_Key.asc), \
                            decompresses and caches it under <cache>/flatcar/<channel>-<version>-<arch>/. A cut \
                            download resumes where it stopped; a file that fails its signature is deleted. \
                            Offline it fails at once, naming the URL and the folder where the four files can be \
                            put by hand. SYSEXT_TEST_FLATCAR_URL replaces the server (a URL with {channel} in it). \
                            Exit status: 0 cached, 2 otherwise.\n\n\
                            Examples:\n  sysext-test guest fetch flatcar:stable\n  \
                            sysext-test guest fetch --arch arm64 flatcar:lts:4081.3.4"
    )]
    Fetch {
        /// flatcar:<channel>[:<version>] (channel: stable, beta, alpha, lts).
        release: String,
        /// x86-64 or arm64.
        #[arg(long, value_parser = parse_arch, default_value = "x86-64")]
        arch: Arch,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Build the guest for an arch, or print where the cached one is. Needs root.
    #[command(
        after_help = "Guests are cached under $XDG_CACHE_HOME/sysext-test/guests (or SYSEXT_TEST_CACHE) by a \
                            hash of their recipe; a second build with the same recipe takes milliseconds."
    )]
    Build {
        /// x86-64, arm64, or all.
        #[arg(long, value_parser = parse_arch_choice, default_value = "x86-64")]
        arch: ArchChoice,
        /// Also boot it once and save its state (what the first VM case would otherwise do).
        #[arg(long)]
        save_state: bool,
        /// debian (the VM cases' guest) or flatcar-shaped (Flatcar's partitions, read-only
        /// /usr, /usr/sbin -> bin, ID=flatcar: the boot cases' guest).
        #[arg(long, default_value = "debian")]
        profile: Profile,
        /// Also boot it once without extensions and keep what that boot logged and its
        /// /usr (what the boot cases compare against; flatcar-shaped only).
        #[arg(long)]
        baseline: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Squashfs,
    Erofs,
}
#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    Gzip,
    Xz,
    Zstd,
}
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ReportFormat {
    Markdown,
    Json,
}
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum OutputFormat {
    Human,
    Json,
}
/// `sysext-test build`'s arguments.
#[derive(clap::Args)]
struct BuildArgs {
    /// Extension specs, e.g. fixtures/extensions/busybox.toml (several build into one directory).
    #[arg(required = true)]
    specs: Vec<PathBuf>,
    /// Output directory (created if missing).
    #[arg(short, long, default_value = ".")]
    output: PathBuf,
    /// Architecture to build for: x86-64, arm64, or all (both, except for specs that pin
    /// one). Defaults to the spec's arch, else x86-64.
    #[arg(long, value_parser = parse_arch_choice)]
    arch: Option<ArchChoice>,
    /// Image format.
    #[arg(long, value_enum, default_value_t = FormatArg::Squashfs)]
    format: FormatArg,
    /// squashfs compression; defaults to the spec's, else gzip (mksquashfs's default).
    #[arg(long, value_enum)]
    compression: Option<CompressionArg>,
    /// URL the transfer file's Source Path points under (default: the bakery hub).
    #[arg(long)]
    hub: Option<String>,
    /// Build this version instead of the spec's (`@VERSION@` in its texts follows).
    #[arg(long)]
    version: Option<String>,
    /// Lay the release out in a bakery release store instead of -o: `DIR/NAME-VERSION/`
    /// (images, SHA256SUMS, NAME.conf), its lines added to `DIR/NAME/SHA256SUMS` and the
    /// global `DIR/SHA256SUMS/SHA256SUMS`, as the bakery's release jobs publish them.
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    store: Option<PathBuf>,
}

/// `sysext-test lint`'s arguments.
#[derive(clap::Args)]
struct LintArgs {
    /// Images (.raw), directory images, or bakery release directories.
    #[arg(required_unless_present = "list_rules")]
    paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    format: OutputFormat,
    /// The OS the images will be merged on: flatcar, flatcar:VERSION (a Flatcar release,
    /// e.g. flatcar:4230.2.0: its VERSION_ID, its /usr/sbin layout and its systemd
    /// decide the version-gated rules), or generic.
    #[arg(long, default_value = "flatcar", value_parser = parse_target)]
    target: TargetSpec,
    /// The target's systemd major version (e.g. 255), when you know it: rules that hold
    /// only before or after a systemd change (lint --list-rules shows which) use it.
    #[arg(long, value_name = "MAJOR")]
    systemd: Option<u32>,
    /// Match extension-release against this os-release instead of the target's built-in one.
    #[arg(long, value_name = "FILE")]
    host_os_release: Option<PathBuf>,
    /// The architecture the images are for (default: from each file name, if bakery-style).
    #[arg(long, value_parser = parse_arch)]
    arch: Option<Arch>,
    /// List every rule with its id, severity and summary, then exit.
    #[arg(long)]
    list_rules: bool,
}

fn parse_target(s: &str) -> Result<TargetSpec, String> {
    s.parse()
}

#[derive(Clone, Copy)]
enum ArchChoice {
    One(Arch),
    All,
}

fn parse_arch_choice(s: &str) -> Result<ArchChoice, String> {
    if s == "all" {
        Ok(ArchChoice::All)
    } else {
        parse_arch(s).map(ArchChoice::One)
    }
}

fn parse_install_to(s: &str) -> Result<sysext_builder::bake::InstallTo, String> {
    s.parse()
}

fn parse_case(s: &str) -> Result<sysext_cases::vm::Case, String> {
    s.parse()
        .map_err(|e: sysext_cases::vm::outcome::UnknownCase| e.to_string())
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    sysext_cases::fuzz::parse_duration(s)
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    s.parse()
        .map_err(|e: sysext_builder::arch::UnknownArch| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => run_build(args),
        Command::Lint(args) => run_lint(args),
        Command::Fuzz {
            duration,
            seed,
            replay,
            mutants,
            subjects,
            timeout,
            workdir,
        } => run_fuzz(duration, seed, replay, mutants, subjects, timeout, workdir),
        Command::Guest(GuestCommand::Build {
            arch,
            save_state,
            profile,
            baseline,
        }) => run_guest_build(arch, save_state, profile, baseline),
        Command::Guest(GuestCommand::Status { format }) => run_guest_status(format),
        Command::Guest(GuestCommand::Clean) => run_guest_clean(),
        Command::Guest(GuestCommand::Fetch {
            release,
            arch,
            format,
        }) => run_guest_fetch(&release, arch, format),
        Command::Guest(GuestCommand::Exec {
            arch,
            profile,
            upload,
            commands,
        }) => run_guest_exec(arch, profile, &upload, &commands),
        Command::Mirror {
            dir,
            port,
            timeout,
            format,
        } => run_mirror(&dir, port, timeout, format),
        Command::Run {
            images,
            arch,
            manifest,
            cases,
            via,
            format,
        } => run_vm(images, arch, manifest, cases, &via, format),
        Command::Ignition {
            image,
            mirror,
            update_drop_in,
            output,
        } => run_ignition(&image, &mirror, update_drop_in, output.as_deref()),
        Command::Check {
            specs,
            output,
            format,
        } => run_check(&specs, &output, format),
        Command::Report {
            inputs,
            format,
            summary,
        } => run_report(&inputs, format, summary.as_deref()),
        Command::Bake {
            images,
            arch,
            base,
            install_to,
            confs,
            output,
            format,
        } => run_bake(images, arch, base, install_to, confs, output, format),
        Command::Bench {
            vm: true,
            runs,
            format,
            ..
        } => run_vm_bench(runs.max(1), format),
        Command::Bench {
            source,
            files,
            max_file_mib,
            runs,
            workdir,
            tmpfs,
            format,
            vm: false,
        } => {
            let opts = sysext_cases::bench::Options {
                source,
                files,
                max_file_size: max_file_mib << 20,
                runs: runs.max(1),
                workdir,
                tmpfs,
            };
            sysext_cases::bench::run(&opts)
                .map_err(anyhow::Error::from)
                .and_then(|r| {
                    match format {
                        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&r)?),
                        OutputFormat::Human => print!("{}", sysext_cases::bench::markdown(&r)),
                    }
                    Ok(ExitCode::SUCCESS)
                })
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sysext-test: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_check(specs: &[PathBuf], output: &Path, format: ReportFormat) -> anyhow::Result<ExitCode> {
    use sysext_cases::verdict::{self, Status, TestResult};
    let mut results = Vec::new();
    for path in specs {
        let fx = sysext_cases::fixtures::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let started = std::time::Instant::now();
        let outcome = sysext_cases::fixtures::check_lint(&fx, &output.join(&fx.name));
        eprintln!(
            "{}: {} in {:.2}s",
            fx.name,
            if outcome.is_ok() {
                "as expected"
            } else {
                "NOT as expected"
            },
            started.elapsed().as_secs_f64()
        );
        results.push(TestResult {
            name: format!("lint::{}", fx.name),
            status: if outcome.is_ok() {
                Status::Pass
            } else {
                Status::Fail
            },
            first_line: outcome
                .err()
                .map(|e| e.lines().next().unwrap_or("").to_string()),
            artifacts: Some(output.join(&fx.name).display().to_string()),
            source: path.clone(),
        });
    }
    let v = verdict::merge(specs.to_vec(), results);
    match format {
        ReportFormat::Markdown => print!("{}", verdict::markdown(&v)),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&v)?),
    }
    Ok(if v.green {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_report(
    inputs: &[PathBuf],
    format: ReportFormat,
    summary: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let verdict = sysext_cases::verdict::from_files(inputs)?;
    let markdown = sysext_cases::verdict::markdown(&verdict);
    match format {
        ReportFormat::Markdown => print!("{markdown}"),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&verdict)?),
    }
    if let Some(path) = summary {
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(markdown.as_bytes()))
            .with_context(|| format!("{}: cannot append the summary", path.display()))?;
    }
    Ok(if verdict.green {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let BuildArgs {
        specs,
        output,
        arch,
        format,
        compression,
        hub,
        version,
        store,
    } = args;
    let base = build::Options {
        arch: None,
        format: match format {
            FormatArg::Squashfs => Format::Squashfs,
            FormatArg::Erofs => Format::Erofs,
        },
        compression: compression.map(|c| match c {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Xz => Compression::Xz,
            CompressionArg::Zstd => Compression::Zstd,
        }),
        hub,
    };
    let total = std::time::Instant::now();
    let mut count = 0;
    for spec_path in &specs {
        let mut spec =
            sysext_builder::spec::Spec::load(spec_path).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(v) = &version {
            spec.version = v.clone();
        }
        let output = match &store {
            Some(root) => root.join(format!("{}-{}", spec.name, spec.version)),
            None => output.clone(),
        };
        let pinned = spec.arch;
        let arches: Vec<Option<Arch>> = match (arch, pinned) {
            (Some(ArchChoice::All), Some(p)) => vec![Some(p)],
            (Some(ArchChoice::All), None) => Arch::ALL.iter().copied().map(Some).collect(),
            (Some(ArchChoice::One(a)), _) => vec![Some(a)],
            (None, _) => vec![None],
        };
        let spec_dir = spec_path.parent().unwrap_or(std::path::Path::new("."));
        for a in arches {
            let opts = build::Options {
                arch: a,
                ..base.clone()
            };
            let start = std::time::Instant::now();
            let out = match build::build_spec(&spec, spec_dir, &output, &opts) {
                Ok(out) => out,
                Err(e) if e.is_usage() => anyhow::bail!("{}: {e}", spec_path.display()),
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("building {}", spec_path.display()))
                    );
                }
            };
            println!("{}  {}", out.sha256, out.image.display());
            eprintln!(
                "built {} ({}) in {:.2}s",
                out.image.display(),
                out.arch,
                start.elapsed().as_secs_f64()
            );
            count += 1;
        }
        if let Some(root) = &store {
            sysext_builder::store::add_release(root, &spec.name, &output)?;
            eprintln!("added {} to the store {}", output.display(), root.display());
        }
    }
    eprintln!(
        "{count} image(s) in {:.1}s; SHA256SUMS and transfer files are in {}",
        total.elapsed().as_secs_f64(),
        store.as_ref().unwrap_or(&output).display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_vm(
    images: Vec<PathBuf>,
    arch: Option<Arch>,
    manifest: Option<PathBuf>,
    cases: Vec<sysext_cases::vm::Case>,
    via: &str,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    use sysext_cases::vm;
    let manifest_given = manifest.is_some();
    let manifest = match &manifest {
        Some(p) => sysext_cases::manifest::Manifest::load(p).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => Default::default(),
    };
    let cases = if cases.is_empty() {
        match via {
            "baked" => vec![vm::Case::Boot],
            "ignition" => vec![vm::Case::Ignition],
            "all" => vm::Case::ALL
                .into_iter()
                .chain([vm::Case::Boot, vm::Case::Ignition])
                .collect(),
            _ => vm::Case::ALL.to_vec(),
        }
    } else {
        cases
    };
    // A store is verified whole before any guest starts; its images then join the plan,
    // each with its extension's manifest unless --manifest names one for all.
    let mut subjects: Vec<(PathBuf, sysext_cases::manifest::Manifest)> = Vec::new();
    for path in &images {
        if path.is_dir() {
            let store = sysext_builder::store::open(path)?;
            for (ext, _, _, image) in store.images() {
                let m = match (
                    &manifest_given,
                    sysext_cases::fixtures::manifest_for(&ext.name),
                ) {
                    (true, _) => manifest.clone(),
                    (false, Ok(Some(m))) => m,
                    (false, Ok(None)) => Default::default(),
                    (false, Err(e)) => anyhow::bail!("{e}"),
                };
                subjects.push((image.to_path_buf(), m));
            }
        } else if path.is_file() {
            // Without --manifest, an extension the project knows (fixtures/manifests/NAME.toml,
            // SYSEXT_TEST_MANIFESTS, a fixture of that name) is checked with its manifest.
            let known = path
                .file_name()
                .and_then(|n| sysext_builder::naming::triple(&n.to_string_lossy(), &[]))
                .filter(|_| !manifest_given)
                .map(|t| sysext_cases::fixtures::manifest_for(&t.name).map(|m| (t.name, m)))
                .transpose()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            match known {
                Some((name, Some(m))) => {
                    eprintln!("{}: checking with the manifest for {name}", path.display());
                    subjects.push((path.clone(), m));
                }
                _ => subjects.push((path.clone(), manifest.clone())),
            }
        } else {
            anyhow::bail!(
                "{}: no such image file or release store; pass NAME-VERSION-ARCH.raw or the folder `gh release download` filled",
                path.display()
            );
        }
    }
    let mut plan = Vec::new();
    for (img, manifest) in &subjects {
        let subject = vm::Subject::from_image(img, manifest.clone())
            .map_err(|e| anyhow::anyhow!("{}: {e}", img.display()))?;
        let a = arch
            .or_else(|| sysext_builder::naming::arch_of(&subject.file_name))
            .unwrap_or(Arch::X86_64);
        plan.push((subject, a));
    }
    let rows = vm::runner::run_session(&plan, &cases, &sysext_harness::Place::from_env(), &|l| {
        eprintln!("{l}")
    });
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Json => report::vm_json(&mut out, &rows)?,
        OutputFormat::Human => report::vm_human(&mut out, &rows)?,
    }
    Ok(ExitCode::from(vm::runner::exit_status(&rows)))
}

fn run_fuzz(
    duration: std::time::Duration,
    seed: Option<u64>,
    replay: Option<u64>,
    mutants: Option<u64>,
    subjects: Vec<String>,
    timeout: std::time::Duration,
    work: PathBuf,
) -> anyhow::Result<ExitCode> {
    use sysext_cases::fuzz::{self, Progress};
    if let Some(what) = fuzz::died_in_flight(&work) {
        eprintln!(
            "fuzz: the last run died while linting {}  (its files are in {}); replay it with --seed and --replay",
            what.trim_end(),
            work.join("mutant").display()
        );
    }
    std::fs::create_dir_all(&work).with_context(|| format!("{}", work.display()))?;
    fuzz::limit_memory(8 << 30).context("capping the address space")?;
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    let wanted: Vec<&str> = subjects.iter().map(String::as_str).collect();
    let subjects = fuzz::prepare(&work, &wanted)?;
    fuzz::quiet_panics();
    let config = fuzz::Config {
        seed,
        duration: replay.is_none().then_some(duration),
        max_mutants: mutants,
        replay,
        timeout,
        work: work.clone(),
    };
    let mut last = std::time::Instant::now();
    let summary = fuzz::run(&config, &subjects, &mut |p| match p {
        Progress::Started { seed, subjects } => eprintln!(
            "fuzz: seed {seed}, {} subjects ({}), {}",
            subjects.len(),
            subjects
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            match replay {
                Some(n) => format!("replaying mutant {n}"),
                None => format!("for {}s", duration.as_secs()),
            }
        ),
        Progress::Tick(stats) => {
            if last.elapsed() >= std::time::Duration::from_secs(10) {
                eprintln!("fuzz: {stats}");
                last = std::time::Instant::now();
            }
        }
        Progress::Failed(f) => eprintln!("fuzz: FAILURE {f}"),
    })?;
    println!("seed {seed}: {}", summary.stats);
    for f in &summary.failures {
        println!("{f}");
    }
    for note in &summary.stricter {
        println!("note: the format's tool reads this back unchanged, lint flags it: {note}");
    }
    if summary.stopped_at_hang {
        println!("stopped at the hang: its lint thread is still running");
    }
    Ok(if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_vm_bench(runs: usize, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let rows = sysext_cases::bench::vm(runs, &|l| eprintln!("bench: {l}"))?;
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?,
        OutputFormat::Human => write!(out, "{}", sysext_cases::bench::vm_table(&rows))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn run_mirror(
    dir: &std::path::Path,
    port: u16,
    timeout: Option<u64>,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    use sysext_harness::mirror::{Logged, Mirror};
    if !dir.is_dir() {
        anyhow::bail!(
            "{}: not a directory; give a release directory (sysext-test build SPEC -o DIR writes one)",
            dir.display()
        );
    }
    if !dir.join("SHA256SUMS").is_file() {
        eprintln!(
            "sysext-test: warning: {} has no SHA256SUMS, so sysupdate will find nothing here (build into it first)",
            dir.display()
        );
    }
    let json = matches!(format, OutputFormat::Json);
    let observer = Box::new(move |r: &Logged| {
        if json {
            if let Ok(line) = serde_json::to_string(r) {
                println!("{line}");
            }
        } else {
            println!(
                "{} {} {} {} bytes{}",
                r.method,
                r.path,
                r.status,
                r.bytes,
                r.fault
                    .map(|f| format!(" (fault: {f})"))
                    .unwrap_or_default()
            );
        }
    });
    let mirror = Mirror::serve_on(dir, port, Some(observer))
        .map_err(|e| anyhow::anyhow!("{e} (pick another --port, or 0 for a free one)"))?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "serving": dir.display().to_string(),
                "url": mirror.url(),
                "guest_url": mirror.guest_url(),
            })
        );
    } else {
        eprintln!(
            "serving {} at {}/\n  guests (QEMU user networking): {}/\n  transfer files for it: sysext-test build SPEC --hub {}\n  Ctrl-C stops",
            dir.display(),
            mirror.url(),
            mirror.guest_url(),
            mirror.guest_url()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let limit = async {
            match timeout {
                Some(s) => tokio::time::sleep(std::time::Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
            _ = limit => Ok(()),
        }
    })?;
    drop(mirror);
    Ok(ExitCode::SUCCESS)
}

fn run_guest_build(
    arch: ArchChoice,
    save_state: bool,
    profile: Profile,
    baseline: bool,
) -> anyhow::Result<ExitCode> {
    if baseline && profile != Profile::FlatcarShaped {
        eprintln!("error: --baseline is for --profile flatcar-shaped (the boot cases' guest)");
        return Ok(ExitCode::from(2));
    }
    let arches = match arch {
        ArchChoice::All => Arch::ALL.to_vec(),
        ArchChoice::One(a) => vec![a],
    };
    for a in arches {
        let recipe = sysext_builder::guest::Recipe::new(profile, a);
        let start = std::time::Instant::now();
        let guest = sysext_builder::guest::build_or_reuse(&recipe, &|line| eprintln!("{line}"))
            .map_err(|e| anyhow::anyhow!("building the {a} guest: {e}"))?;
        // Probing here (cached per host boot) keeps the first VM case's clock clean; this
        // command is also nextest's setup script for the VM cases.
        let accel = sysext_harness::accel::choose(a, &guest.kernel);
        println!(
            "{a}\t{}\tkernel {}\t{}\t{:.1}s",
            guest.dir.display(),
            guest.kernel_version,
            accel.name(),
            start.elapsed().as_secs_f64()
        );
        if save_state {
            let place = sysext_harness::Place::from_env();
            let snap =
                sysext_harness::snapshot::shared(&guest, &place.snapshots(), &|l| eprintln!("{l}"))
                    .map_err(|e| anyhow::anyhow!("saving the {a} guest's state: {e}"))?;
            println!("{a}	saved state	{}", snap.dir.display());
        }
        if baseline {
            let b = sysext_cases::boot::baseline(&guest, &|l| eprintln!("{l}"))
                .map_err(|e| anyhow::anyhow!("the {a} baseline boot: {e}"))?;
            println!(
                "{a}\tbaseline\tlogin in {:.1}s, {} error line(s), {} paths under /usr",
                b.login_seconds,
                b.boot_errors.len(),
                b.usr.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_ignition(
    image: &std::path::Path,
    mirror: &str,
    drop_in: sysext_builder::ignition::UpdateDropIn,
    output: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let Some(arch) = image
        .file_name()
        .and_then(|n| sysext_builder::naming::arch_of(&n.to_string_lossy()))
    else {
        eprintln!(
            "error: {}: not named NAME-VERSION-ARCH.raw; rename it the bakery way, e.g. docker-28.0.4-x86-64.raw",
            image.display()
        );
        return Ok(ExitCode::from(2));
    };
    let ext = match sysext_builder::bake::extensions(&[image.to_path_buf()], arch, &[]) {
        Ok(mut e) => e.remove(0),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if !(mirror.starts_with("http://") || mirror.starts_with("https://")) {
        eprintln!(
            "error: --mirror {mirror}: give an http(s) URL, e.g. http://10.0.2.2:8080/extensions"
        );
        return Ok(ExitCode::from(2));
    }
    let sha = sysext_builder::sha256sums::digest_file(image)
        .with_context(|| format!("reading {}", image.display()))?;
    let config = sysext_builder::ignition::for_extension(&sysext_builder::ignition::Request {
        name: &ext.name,
        file_name: &ext.file_name,
        sha256: &sha,
        base_url: mirror.trim_end_matches('/'),
        drop_in,
    });
    let json = serde_json::to_string_pretty(&config)? + "\n";
    match output {
        Some(path) => sysext_builder::atomic::write_bytes(path, json.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        None => print!("{json}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn run_bake(
    images: Vec<PathBuf>,
    arch: Option<Arch>,
    base: Option<PathBuf>,
    install_to: sysext_builder::bake::InstallTo,
    confs: Vec<PathBuf>,
    output: PathBuf,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    use sysext_builder::bake;
    let usage = |e: sysext_builder::BakeError| -> anyhow::Result<ExitCode> {
        if e.is_usage() || matches!(e, sysext_builder::BakeError::Tool(_)) {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        } else {
            Err(anyhow::anyhow!("bake: {e}"))
        }
    };
    let arch = match arch.or_else(|| {
        images.iter().find_map(|i| {
            i.file_name()
                .and_then(|n| sysext_builder::naming::arch_of(&n.to_string_lossy()))
        })
    }) {
        Some(a) => a,
        None => {
            eprintln!(
                "error: {}: cannot tell the architecture from the file name; pass --arch x86-64 or --arch arm64",
                images[0].display()
            );
            return Ok(ExitCode::from(2));
        }
    };
    let exts = match bake::extensions(&images, arch, &confs) {
        Ok(e) => e,
        Err(e) => return usage(e),
    };
    let base = match base {
        Some(b) => b,
        None => {
            let recipe = sysext_builder::guest::Recipe::new(Profile::FlatcarShaped, arch);
            sysext_builder::guest::build_or_reuse(&recipe, &|l| eprintln!("{l}"))
                .map_err(|e| anyhow::anyhow!("the default base is the flatcar-shaped {arch} guest, which could not be built ({e}); pass --base DISK"))?
                .disk
        }
    };
    let start = std::time::Instant::now();
    let written = match bake::bake(&base, &exts, install_to, &output, &|l| eprintln!("{l}")) {
        Ok(w) => w,
        Err(e) => return usage(e),
    };
    match format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({
                "output": output,
                "base": base,
                "arch": arch.systemd_name(),
                "written": written,
                "seconds": start.elapsed().as_secs_f64(),
            })
        ),
        OutputFormat::Human => {
            for w in &written {
                println!("{:<5} {}  ({})", w.partition, w.path, w.what);
            }
            println!(
                "baked {} extension(s) into {} ({arch}, from {}) in {:.1}s",
                exts.len(),
                output.display(),
                base.display(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_guest_exec(
    arch: Arch,
    profile: Profile,
    uploads: &[String],
    commands: &[String],
) -> anyhow::Result<ExitCode> {
    let mut pairs = Vec::new();
    for u in uploads {
        let Some((local, remote)) = u
            .split_once(':')
            .filter(|(l, r)| !l.is_empty() && r.starts_with('/'))
        else {
            eprintln!(
                "error: --upload {u}: expected LOCAL:REMOTE with an absolute guest path, e.g. my.raw:/etc/extensions/my.raw"
            );
            return Ok(ExitCode::from(2));
        };
        let local = PathBuf::from(local);
        if !local.is_file() {
            eprintln!("error: --upload {u}: {} is not a file", local.display());
            return Ok(ExitCode::from(2));
        }
        pairs.push((local, remote.to_string()));
    }
    let place = sysext_harness::Place::from_env();
    let (vm, notes) = match sysext_cases::vm::runner::restored(arch, profile, &place, None, &|l| {
        eprintln!("{l}")
    }) {
        Ok(v) => v,
        Err(sysext_cases::vm::Verdict::Error { stage, message }) => {
            eprintln!("error: {stage}: {message}");
            return Ok(ExitCode::from(2));
        }
        Err(other) => anyhow::bail!("restoring the {arch} guest: {}", other.word()),
    };
    for n in notes {
        eprintln!("note: {n}");
    }
    eprintln!(
        "restored the {arch} guest in {:.1}s",
        vm.startup.as_secs_f64()
    );
    for (local, remote) in &pairs {
        vm.upload(local, remote)
            .map_err(|e| anyhow::anyhow!("uploading {}: {e}", local.display()))?;
    }
    let mut all_ok = true;
    for cmd in commands {
        let start = std::time::Instant::now();
        let out = vm
            .execute(cmd)
            .map_err(|e| anyhow::anyhow!("running {cmd:?}: {e}"))?;
        eprintln!("$ {cmd}");
        print!("{}", out.stdout);
        eprint!("{}", out.stderr);
        eprintln!(
            "(exit {}, {:.2}s)",
            out.status,
            start.elapsed().as_secs_f64()
        );
        all_ok &= out.status == 0;
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_guest_status(format: OutputFormat) -> anyhow::Result<ExitCode> {
    use sysext_harness::snapshot;
    let place = sysext_harness::Place::from_env();
    let mut rows = Vec::new();
    for entry in snapshot::list(&place.snapshots()) {
        let (arch, record) = match &entry.record {
            Ok(r) => (Some(r.arch), serde_json::to_value(r).ok()),
            Err(_) => (None, None),
        };
        // Validity is judged against the guest the current recipe builds, if it is cached.
        let validity = match arch.map(|a| {
            let recipe = sysext_builder::guest::Recipe::debian(a);
            (recipe.cache_dir().join(".complete").exists(), recipe)
        }) {
            Some((true, recipe)) => {
                let guest = sysext_builder::guest::build_or_reuse(&recipe, &|_| {})
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                snapshot::validity(&entry, &guest)
            }
            Some((false, _)) => {
                Err("the current recipe's guest is not built (its recipe changed)".into())
            }
            None => entry.record.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        };
        rows.push((entry, record, validity));
    }
    let mut out = std::io::stdout().lock();
    if format == OutputFormat::Json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(e, record, validity)| {
                serde_json::json!({
                    "dir": e.dir, "bytes": e.bytes, "record": record,
                    "valid": validity.is_ok(),
                    "reason": validity.as_ref().err(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        writeln!(
            out,
            "no saved guest states under {} (the next VM case saves one)",
            place.snapshots().display()
        )?;
    }
    for (e, _, validity) in &rows {
        writeln!(out, "{} ({} MB)", e.dir.display(), e.bytes / 1_000_000)?;
        if let Ok(r) = &e.record {
            writeln!(
                out,
                "  {} guest {}, {}, {}, key {}\n  cold boot {:.1}s (network beacon {}), saved at {}",
                r.arch,
                r.guest,
                r.qemu,
                r.accel.name(),
                r.key,
                r.cold_boot_seconds,
                r.beacon_seconds
                    .map(|b| format!("{b:.1}s"))
                    .unwrap_or_else(|| "?".into()),
                r.saved_at
            )?;
        }
        match validity {
            Ok(()) => writeln!(
                out,
                "  valid: recipe, QEMU, accelerator, command line and key all match; the next run restores it"
            )?,
            Err(why) => writeln!(
                out,
                "  stale: {why}; the next run boots and saves a new one"
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_guest_fetch(release: &str, arch: Arch, format: OutputFormat) -> anyhow::Result<ExitCode> {
    use sysext_harness::flatcar;
    let release: flatcar::Release = release.parse()?;
    let place = sysext_harness::Place::from_env();
    let fetcher = flatcar::Fetcher::from_env(&place.cache);
    let image = fetcher.fetch(&release, arch, &|l| eprintln!("{l}"))?;
    match format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({
                "channel": image.channel,
                "version": image.version,
                "arch": arch.systemd_name(),
                "disk": image.disk,
                "from_cache": image.from_cache,
            })
        ),
        OutputFormat::Human => println!(
            "flatcar {} {} ({arch}): {}",
            image.channel,
            image.version,
            image.disk.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn run_guest_clean() -> anyhow::Result<ExitCode> {
    let place = sysext_harness::Place::from_env();
    let freed =
        sysext_harness::snapshot::clean(&place.snapshots()).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "removed saved guest states under {} ({} MB)",
        place.snapshots().display(),
        freed / 1_000_000
    );
    Ok(ExitCode::SUCCESS)
}

fn run_lint(args: LintArgs) -> anyhow::Result<ExitCode> {
    let LintArgs {
        paths,
        format,
        target,
        systemd,
        host_os_release,
        arch,
        list_rules,
    } = args;
    if list_rules {
        let mut out = std::io::stdout().lock();
        if format == OutputFormat::Json {
            let rules: Vec<serde_json::Value> = lint::rules::all()
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id, "severity": r.severity.as_str(),
                        "summary": r.summary, "reference": r.reference,
                        "applies_to": lint::gates::gate(r.id).map(|g| g.describe()),
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&rules)?)?;
            return Ok(ExitCode::SUCCESS);
        }
        for r in lint::rules::all() {
            let gate = lint::gates::gate(r.id)
                .map(|g| format!(" (only {})", g.describe()))
                .unwrap_or_default();
            writeln!(
                out,
                "{:<36} {:<7} {}{gate}  [{}]",
                r.id,
                r.severity.as_str(),
                r.summary,
                r.reference
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let host = match &host_os_release {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read the host os-release", p.display()))?;
            Some(sysext_builder::osrelease::OsRelease::parse(&text).0)
        }
        None => None,
    };
    let linter = Linter::new(lint::Options {
        target,
        systemd,
        host_os_release: host,
        arch,
    });
    let mut reports = Vec::new();
    for p in &paths {
        match linter.lint_path(p) {
            Ok(r) => reports.extend(r),
            Err(LintError::Io { path, source })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                anyhow::bail!(
                    "{}: no such file or directory; pass an image (.raw), a directory image or a release directory",
                    path.display()
                )
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Json => report::json(&mut out, &reports, &linter.target().describe())?,
        OutputFormat::Human => report::human(
            &mut out,
            &reports,
            &linter.target().describe(),
            std::io::stdout().is_terminal(),
        )?,
    }
    let summary = report::summarize(&reports);
    Ok(if summary.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
