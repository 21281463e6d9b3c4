//! The mutation campaign as tests (`mutation::*`), and the engine's own checks.
//!
//! Each campaign test builds its subjects and lints a fixed number of seeded mutants of
//! them (about ten seconds in all); `SYSEXT_TEST_FUZZ_SECS=N` makes each run for N seconds
//! instead and `SYSEXT_TEST_FUZZ_SEED` picks the seed (`cargo nextest run --profile fuzz`).

use super::*;

/// Mutants per campaign test when no time budget is given.
const DEFAULT_MUTANTS: u64 = 150;
const DEFAULT_SEED: u64 = 1;

mod mutation {
    use super::*;

    fn campaign(subjects: &[&str], mutants: u64) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let work = tmp.path();
        let subjects = prepare(work, subjects).unwrap_or_else(|e| panic!("{e}"));
        quiet_panics();
        // Far more than lint needs; keeps a runaway allocation from the OOM killer.
        limit_memory(8 << 30).expect("setrlimit");
        let budget = std::env::var("SYSEXT_TEST_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| *s > 0);
        let seed = std::env::var("SYSEXT_TEST_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(DEFAULT_SEED);
        let config = Config {
            seed,
            duration: budget.map(Duration::from_secs),
            max_mutants: if budget.is_some() {
                None
            } else {
                Some(mutants)
            },
            replay: None,
            timeout: Duration::from_secs(10),
            work: work.to_path_buf(),
        };
        let summary = run(&config, &subjects, &mut |p| {
            if let Progress::Failed(f) = p {
                eprintln!("{f}");
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("seed {seed}: {}", summary.stats);
        let failures: Vec<String> = summary.failures.iter().map(|f| f.to_string()).collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn lint_never_panics_hangs_or_misses_a_broken_squashfs() {
        campaign(&["squashfs-gzip:hello-service"], DEFAULT_MUTANTS);
    }

    #[test]
    fn lint_never_panics_hangs_or_misses_a_broken_xz_squashfs_with_an_elf() {
        campaign(&["squashfs-xz:busybox"], DEFAULT_MUTANTS / 2);
    }

    #[test]
    fn lint_never_panics_hangs_or_misses_a_broken_mksquashfs_image_with_xattrs() {
        campaign(&["mksquashfs-xattr:hello-service"], DEFAULT_MUTANTS);
    }

    #[test]
    fn lint_never_panics_hangs_or_misses_a_broken_uncompressed_squashfs_with_an_elf() {
        campaign(&["mksquashfs-uncompressed:busybox"], DEFAULT_MUTANTS / 2);
    }

    #[test]
    fn lint_never_panics_hangs_or_misses_a_broken_erofs() {
        campaign(&["erofs:hello-service"], DEFAULT_MUTANTS);
    }

    #[test]
    fn lint_never_panics_hangs_or_misses_a_broken_release_dir() {
        campaign(&["release-dir:hello-service"], DEFAULT_MUTANTS);
    }
}

fn subject(name: &str, files: &[(&str, &[u8])]) -> Subject {
    Subject {
        name: name.into(),
        kind: SubjectKind::ReleaseDir,
        files: files
            .iter()
            .map(|(n, b)| SubjectFile {
                name: n.to_string(),
                bytes: b.to_vec(),
            })
            .collect(),
        tree: None,
    }
}

#[test]
fn a_mutant_is_a_function_of_seed_and_index() {
    let s = [
        subject("a", &[("x.raw", &[7u8; 9000]), ("SHA256SUMS", b"abc\n")]),
        subject("b", &[("y.raw", &[1u8; 100])]),
    ];
    for i in 0..200 {
        let m = Mutation::generate(&s, 42, i);
        assert_eq!(m, Mutation::generate(&s, 42, i));
        assert_eq!(m.subject, (i % 2) as usize, "subjects take turns");
        let _ = m.apply(&s);
    }
    let differ = (0..50).any(|i| Mutation::generate(&s, 1, i) != Mutation::generate(&s, 2, i));
    assert!(differ, "the seed changes the mutants");
}

#[test]
fn every_kind_of_mutation_is_drawn() {
    let s = [subject("a", &[("x.raw", &[7u8; 9000])])];
    let ops: Vec<Op> = (0..200).map(|i| Mutation::generate(&s, 5, i).op).collect();
    assert!(ops.iter().any(|o| matches!(o, Op::Flip(_))));
    assert!(ops.iter().any(|o| matches!(o, Op::Truncate(_))));
    assert!(ops.iter().any(|o| matches!(o, Op::Splice { .. })));
    assert!(ops.iter().any(|o| matches!(o, Op::Zero { .. })));
}

#[test]
fn mutations_apply_as_described() {
    let s = [
        subject("a", &[("x.raw", b"0123456789")]),
        subject("b", &[("d", b"ABCDEF")]),
    ];
    let m = |op| Mutation {
        subject: 0,
        file: 0,
        op,
    };
    assert_eq!(
        m(Op::Flip(vec![(0, 0x01), (99, 0xff)])).apply(&s),
        b"1123456789"
    );
    assert_eq!(m(Op::Truncate(3)).apply(&s), b"012");
    assert_eq!(m(Op::Zero { at: 8, len: 100 }).apply(&s), b"01234567\0\0");
    let splice = Op::Splice {
        at: 8,
        donor: "b/d".into(),
        from: 2,
        len: 3,
    };
    assert_eq!(m(splice).apply(&s), b"01234567CDE");
}

#[test]
fn sums_oracle_reads_upper_case_hex_as_the_same_digest() {
    let d = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let orig = format!("{d}  a-1-x86-64.raw\n");
    assert_eq!(
        sums_entries(
            orig.to_uppercase()
                .replace("A-1-X86-64.RAW", "a-1-x86-64.raw")
                .as_bytes()
        ),
        sums_entries(orig.as_bytes())
    );
    assert!(sums_entries(format!("{d} *a-1-x86-64.raw\n").as_bytes()).is_some());
    for broken in [
        format!("{d}  a-1-x86-64.raw"),
        format!("{d} a-1-x86-64.raw\n"),
        format!("{d}  sub/a.raw\n"),
        format!("{}  a.raw\n", &d[1..]),
    ] {
        assert_eq!(sums_entries(broken.as_bytes()), None, "{broken:?}");
    }
}

#[test]
fn transfer_oracle_flags_syntax_and_unknown_names_not_values() {
    let good = sysext_builder::transfer::render_bakery("x", sysext_builder::transfer::BAKERY_HUB);
    assert_eq!(transfer_problem(good.as_bytes()), None);
    assert_eq!(
        transfer_problem(good.replace("InstancesMax=3", "InstancesMax=2").as_bytes()),
        None
    );
    for broken in [
        good.replace("InstancesMax=3", "InstancesMax3"),
        good.replace("InstancesMax", "InstancesMix"),
        good.replace("[Source]", "[Sourc]"),
        good.replace("[Source]", "[Source"),
        good.replace("[Transfer]\n", ""),
        format!("{good}trailing \\"),
    ] {
        assert!(transfer_problem(broken.as_bytes()).is_some(), "{broken}");
    }
    assert!(transfer_problem(b"[Transfer]\n\xff=1\n").is_some());
}

#[test]
fn a_panicking_lint_is_reported_with_its_message_and_place() {
    quiet_panics();
    match bounded(|| panic!("boom at {}", 42), Duration::from_secs(10)) {
        Outcome::Panic(m) => assert!(m.contains("boom at 42") && m.contains("tests.rs"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lint_that_does_not_return_in_time_is_a_hang() {
    let outcome = bounded(
        || {
            std::thread::sleep(Duration::from_secs(3));
            Ok(Vec::new())
        },
        Duration::from_millis(100),
    );
    assert!(matches!(outcome, Outcome::Hang), "{outcome:?}");
}

#[test]
fn durations_read_like_people_write_them() {
    assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
    assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert!(parse_duration("10 minutes").is_err());
    assert!(parse_duration("m").is_err());
}

#[test]
fn a_clean_subject_reads_back_as_the_same_tree() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let subjects =
        prepare(tmp.path(), &["squashfs-gzip:hello-service"]).unwrap_or_else(|e| panic!("{e}"));
    let s = &subjects[0];
    let path = write_subject(s, None, &tmp.path().join("m")).unwrap_or_else(|e| panic!("{e}"));
    let m = Mutation {
        subject: 0,
        file: 0,
        op: Op::Flip(vec![]),
    };
    let verdict = judge(s, &m, &s.files[0].bytes, &path, &tmp.path().join("r"));
    assert_eq!(verdict, Verdict::Same);
    let tree = s.tree.as_ref().expect("tree");
    assert!(
        tree.contains_key("usr/lib/systemd/system/hello-daemon.service"),
        "{:?}",
        tree.keys()
    );
}

/// Lints the mksquashfs subject with one byte flipped at the offset `at` computes from the
/// image, and returns the warnings and errors.
fn lint_mksquashfs_flipped(at: impl Fn(&[u8]) -> usize, mask: u8) -> Vec<String> {
    lint_flipped("mksquashfs-xattr:hello-service", at, mask)
}

/// Lints `subject`'s image with the bits of `mask` flipped in the byte `at` picks.
fn lint_flipped(subject: &str, at: impl Fn(&[u8]) -> usize, mask: u8) -> Vec<String> {
    lint_flips(subject, |b| vec![(at(b), mask)])
}

/// Lints `subject`'s image with the flips (offset, mask) that `flips` picks from its bytes.
fn lint_flips(subject: &str, flips: impl Fn(&[u8]) -> Vec<(usize, u8)>) -> Vec<String> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let subjects = prepare(tmp.path(), &[subject]).unwrap_or_else(|e| panic!("{e}"));
    let m = Mutation {
        subject: 0,
        file: 0,
        op: Op::Flip(flips(&subjects[0].files[0].bytes)),
    };
    let bytes = m.apply(&subjects);
    let path = write_subject(&subjects[0], Some((0, &bytes)), &tmp.path().join("m"))
        .unwrap_or_else(|e| panic!("{e}"));
    quiet_panics();
    match lint_bounded(&path, Duration::from_secs(10)) {
        Outcome::Reports(reports) => serious(&reports),
        other => panic!("{other:?}"),
    }
}

/// The mutant must be an `image/unreadable` finding: systemd refuses it.
fn assert_unreadable(found: Vec<String>) {
    assert!(
        found.iter().any(|f| f.starts_with("image/unreadable")),
        "{found:#?}"
    );
}

fn u64_at(b: &[u8], o: usize) -> usize {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes")) as usize
}

/// Regression, found by `sysext-test fuzz --seed 300` (mutants 1977, 2665, 2669): an xattr
/// id whose count claims more pairs than the table holds. unsquashfs crashes on it; lint
/// read the first pair, found `user.extension-release.strict=0` there and said nothing.
#[test]
fn lint_flags_an_xattr_id_whose_count_overruns_its_pairs() {
    // Superblock offset 56: the xattr id table; 16 bytes on, the first id block's address.
    // That block: a 2-byte header, then the id { u64 ref, u32 count, u32 size }.
    let found = lint_mksquashfs_flipped(|b| u64_at(b, u64_at(b, 56) + 16) + 2 + 8 + 2, 0x02);
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("release/xattrs-unreadable")),
        "{found:#?}"
    );
}

/// Regression, found by `sysext-test fuzz --seed 301` (mutant 2221): the xattr id table's
/// count grown past what its index holds. Linux refuses to mount such an image
/// (fs/squashfs/xattr_id.c); lint read the first id and said nothing.
#[test]
fn lint_flags_an_xattr_id_count_its_index_does_not_hold() {
    assert_unreadable(lint_mksquashfs_flipped(|b| u64_at(b, 56) + 9, 0x20));
}

/// Regression, found by `sysext-test fuzz --seed 301` (mutants 496, 2573): the uid/gid
/// table's block header claims more bytes than its ids. backhand read it; unsquashfs
/// calls it corruption and extracts nothing.
#[test]
fn lint_flags_an_id_table_block_longer_than_its_ids() {
    assert_unreadable(lint_mksquashfs_flipped(|b| u64_at(b, u64_at(b, 48)), 0x10));
}

// Superblock offsets: 40 bytes_used, 48 id table index, 80 fragment table index.

/// Regression, found by `sysext-test fuzz --seed 20261130` (mutant 935): `bytes_used`
/// shrunk below the id table's start. unsquashfs ("id table start too large in super
/// block") and Linux refuse the image; backhand read it.
#[test]
fn lint_flags_a_table_that_starts_past_the_end_of_the_filesystem() {
    assert_unreadable(lint_flipped("squashfs-gzip:hello-service", |_| 0x28, 0x10));
}

/// Regression, found by `sysext-test fuzz --seed 20261130` (mutant 1584): `bytes_used` a
/// few bytes off, so the id index no longer ends where the filesystem does. unsquashfs
/// ("Bad id count in super block") and Linux check that length exactly.
#[test]
fn lint_flags_an_id_index_that_does_not_end_at_the_next_table() {
    assert_unreadable(lint_flipped("squashfs-gzip:hello-service", |_| 0x28, 0x04));
}

/// Regression, found by `sysext-test fuzz --seed 20261130` (mutant 5514): the fragment
/// table's metadata block header claims 20 bytes for one 16-byte entry. unsquashfs cannot
/// read the table ("failed to read fragment table index"); backhand read what it needed.
#[test]
fn lint_flags_a_fragment_table_block_that_does_not_hold_its_entries() {
    // The fragment index's first entry points at the table's metadata block header.
    assert_unreadable(lint_flipped(
        "squashfs-gzip:hello-service",
        |b| u64_at(b, u64_at(b, 80)),
        0x04,
    ));
}

/// Regression, found by `sysext-test fuzz --seed 20261130` (mutant 22096): the xattr
/// key/value block's header claims 256 bytes more than the block has. unsquashfs gives up
/// on every xattr ("Xattr block 0 should be 8192 bytes"); lint read the first pair.
#[test]
fn lint_flags_xattr_blocks_that_overrun_the_xattr_ids() {
    // Superblock offset 56: the xattr id table, whose first field is where the key/value
    // blocks start; +1 is the high byte of the first block's length word.
    assert_unreadable(lint_mksquashfs_flipped(
        |b| u64_at(b, u64_at(b, 56)) + 1,
        0x01,
    ));
}

/// Regression, found by `sysext-test fuzz --seed 20261201` (mutants 5326, 8950, 14596): the
/// xattr id table's metadata block header claims another length than its ids take.
/// unsquashfs sizes that block by where the table's header starts and refuses it.
#[test]
fn lint_flags_an_xattr_id_block_whose_header_lies_about_its_length() {
    // Superblock offset 56: the xattr id table header; 16 bytes on, its index, whose first
    // entry points at the id block's length word.
    assert_unreadable(lint_mksquashfs_flipped(
        |b| u64_at(b, u64_at(b, 56) + 16),
        0x01,
    ));
}

/// Regression, found by `sysext-test fuzz --seed 20261201` (mutant 6077): bytes spliced
/// into the (uncompressed) inode table left an inode numbered 0. unsquashfs refuses inode
/// numbers outside 1..=inodes ("inode number zero is invalid"); backhand does not look.
#[test]
fn lint_flags_an_inode_number_outside_the_superblocks_count() {
    // Superblock offset 64: the inode table; the first inode's header is 2 bytes into its
    // uncompressed metadata block, and its number is the last 4 of its 16 header bytes:
    // flipping the low byte of a number below 8 puts it above the image's 7 inodes.
    assert_unreadable(lint_flipped(
        "mksquashfs-uncompressed:busybox",
        |b| u64_at(b, 64) + 2 + 12,
        0xff,
    ));
}

/// Regression, found by `sysext-test fuzz --seed 20261202` (mutant 6598): the superblock's
/// obsolete check-data flag set. unsquashfs then expects an extra byte after every metadata
/// header and misreads the xattr table ("Xattr block 0 should be 8192 bytes").
#[test]
fn lint_flags_the_obsolete_check_data_flag() {
    // Superblock offset 24: the flags word.
    assert_unreadable(lint_mksquashfs_flipped(|_| 0x18, 0x04));
}

/// Regression, found by `sysext-test fuzz --seed 400` (mutants 4469, 5044): a flip in the
/// top 16 bits of an xattr id's reference, which Linux and unsquashfs ignore. lint took the
/// whole 48 bits, missed the strict flag, and reported a name mismatch systemd would not see.
#[test]
fn lint_reads_xattr_references_as_the_kernel_does() {
    let found = lint_mksquashfs_flipped(|b| u64_at(b, u64_at(b, 56) + 16) + 2 + 6, 0x08);
    assert_eq!(found, Vec::<String>::new());
}

/// Regression, found by `sysext-test fuzz --seed 8675309` (mutant 15869): the directory
/// entry for usr/bin pointed 256 bytes past its inode, beyond the end of the inode table's
/// only metadata block. unsquashfs ("read_inode: failed to read inode 2024668:352") and
/// Linux read an inode where the entry points; backhand looked the inode up by its number
/// instead, found usr/bin, and lint said nothing.
#[test]
fn lint_flags_a_directory_entry_that_points_past_its_inode() {
    assert_unreadable(lint_flipped(
        "mksquashfs-uncompressed:busybox",
        |b| usr_bin_entry(b) + 1,
        0x01,
    ));
}

/// The same class: the usr/bin entry pointing at the start of another whole inode (usr/lib's,
/// a directory too). Linux would show usr/lib's contents under usr/bin; backhand, going by
/// the entry's number, showed usr/bin's, so lint checked another tree than systemd merges.
#[test]
fn lint_flags_a_directory_entry_that_points_at_another_inode() {
    assert_unreadable(lint_flips("mksquashfs-uncompressed:busybox", |b| {
        let (bin, lib) = (usr_bin_entry(b), entry_named(b, b"lib"));
        vec![(bin, b[bin] ^ b[lib]), (bin + 1, b[bin + 1] ^ b[lib + 1])]
    }));
}

/// The same class: the usr/bin entry saying "FIFO" (type 6) for a directory inode. backhand
/// takes an entry's type on its word for FIFOs and sockets; Linux goes by the inode.
#[test]
fn lint_flags_a_directory_entry_whose_type_is_not_its_inodes() {
    assert_unreadable(lint_flipped(
        "mksquashfs-uncompressed:busybox",
        |b| usr_bin_entry(b) + 4,
        0x01 ^ 0x06,
    ));
}

/// Where the directory entry for usr/bin starts in the uncompressed busybox image.
fn usr_bin_entry(b: &[u8]) -> usize {
    entry_named(b, b"bin")
}

/// Where the (directory) entry `name` starts: { u16 inode offset, i16 number delta, u16 type
/// 1, u16 name size - 1, name }, found in the directory table (superblock offsets 72 and
/// 80: the directory table, then the fragment table), which this subject stores uncompressed.
fn entry_named(b: &[u8], name: &[u8]) -> usize {
    let (dirs, end) = (u64_at(b, 72), u64_at(b, 80));
    let mut tail = vec![0x01, 0x00, name.len() as u8 - 1, 0x00];
    tail.extend_from_slice(name);
    let at = b[dirs..end]
        .windows(tail.len())
        .position(|w| w == tail.as_slice())
        .unwrap_or_else(|| panic!("no entry {:?}", String::from_utf8_lossy(name)));
    dirs + at - 4
}
