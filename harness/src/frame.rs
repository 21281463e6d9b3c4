//! How several commands share one guest shell and still come back apart: each runs in a
//! subshell with stdin from /dev/null, between marker lines on both streams (stdout gets
//! `MARK id` … `MARK id rc N`, stderr `MARK id` … `MARK id end`). Only shell builtins
//! besides the commands themselves: under TCG every extra process costs tens of
//! milliseconds. Used for a batch inside one exec ([`crate::Vm::batch`]) and for every
//! command sent to the session's long-lived shell ([`crate::ssh::Ssh::exec`]), each with
//! its own mark so a batch inside the shell cannot be mistaken for the shell's frame.

use crate::ssh::Output;

/// The script that runs `cmds`, numbered from `first`.
pub fn script(mark: &str, cmds: &[&str], first: u64) -> String {
    let mut s = String::new();
    for (i, c) in (first..).zip(cmds) {
        s.push_str(&format!(
            "printf '%s\\n' '{mark} {i}'; printf '%s\\n' '{mark} {i}' >&2\n( {c}\n) </dev/null\nrc=$?\nprintf '\\n%s %s\\n' '{mark} {i} rc' \"$rc\"; printf '\\n%s\\n' '{mark} {i} end' >&2\n"
        ));
    }
    s
}

/// `script` as one compound command: a shell parses all of it before it runs any of it,
/// so nothing comes back while the script is still being written to the shell's stdin.
/// Output that arrived during a long blocking write lost a frame's first line (a 60 KB
/// batch of 200 commands timed out with all of its output in hand).
pub fn whole(script: &str) -> String {
    format!("{{\n{script}}}\n")
}

/// Splits what [`script`] printed back into one [`Output`] per command `first..first+n`;
/// `None` until every frame is complete on both streams.
pub fn parse(mark: &str, stdout: &str, stderr: &str, first: u64, n: usize) -> Option<Vec<Output>> {
    let mut outs = Vec::with_capacity(n);
    let (mut out_rest, mut err_rest) = (stdout, stderr);
    for i in (first..).take(n) {
        let open = format!("{mark} {i}\n");
        let rc = format!("\n{mark} {i} rc ");
        let end = format!("\n{mark} {i} end\n");
        out_rest = &out_rest[out_rest.find(&open)? + open.len()..];
        let c = out_rest.find(&rc)?;
        let out = out_rest[..c].to_string();
        out_rest = &out_rest[c + rc.len()..];
        let eol = out_rest.find('\n')?;
        let status = out_rest[..eol].trim().parse().ok()?;
        out_rest = &out_rest[eol..];
        err_rest = &err_rest[err_rest.find(&open)? + open.len()..];
        let e = err_rest.find(&end)?;
        let err = err_rest[..e].to_string();
        err_rest = &err_rest[e + end.len()..];
        outs.push(Output {
            status,
            stdout: out,
            stderr: err,
        });
    }
    Some(outs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(script: &str) -> (String, String) {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn a_batch_runs_in_a_shell_and_splits_back() {
        let cmds = [
            "echo one; echo err >&2",
            "printf 'no newline'; exit 3",
            "true",
        ];
        let (out, err) = run(&script("M", &cmds, 0));
        let parsed = parse("M", &out, &err, 0, 3).unwrap();
        assert_eq!(parsed[0].stdout, "one\n");
        assert_eq!(parsed[0].stderr, "err\n");
        assert_eq!(parsed[0].status, 0);
        assert_eq!(parsed[1].stdout, "no newline");
        assert_eq!(parsed[1].stderr, "");
        assert_eq!(parsed[1].status, 3);
        assert_eq!(parsed[2].status, 0);
        assert!(parse("M", "garbage", "", 0, 1).is_none());
    }

    #[test]
    fn a_batch_inside_a_frame_of_another_mark_stays_inside() {
        let inner = script("B", &["echo in; echo e >&2", "exit 4"], 0);
        let (out, err) = run(&script("S", &[inner.as_str()], 7));
        let outer = parse("S", &out, &err, 7, 1).unwrap();
        assert_eq!(outer[0].status, 0);
        let parsed = parse("B", &outer[0].stdout, &outer[0].stderr, 0, 2).unwrap();
        assert_eq!(parsed[0].stdout, "in\n");
        assert_eq!(parsed[0].stderr, "e\n");
        assert_eq!(parsed[1].status, 4);
    }

    #[test]
    fn a_whole_script_runs_nothing_until_all_of_it_is_read() {
        let cmds = ["echo early", "echo late"];
        let (out, err) = run(&whole(&script("M", &cmds, 0)));
        assert_eq!(parse("M", &out, &err, 0, 2).unwrap()[1].stdout, "late\n");
        // Cut before its end, nothing of it runs: no output can race the writer.
        let full = whole(&script("M", &cmds, 0));
        let (out, _) = run(&full[..full.len() - 3]);
        assert!(!out.contains("early"), "{out}");
    }

    #[test]
    fn an_unfinished_frame_is_not_parsed() {
        let (out, err) = run(&script("M", &["echo partial"], 3));
        // The exit status line without its newline: the number may still be growing.
        let cut = out.trim_end_matches('\n');
        assert!(parse("M", cut, &err, 3, 1).is_none());
        assert!(parse("M", &out, "", 3, 1).is_none(), "stderr frame missing");
        assert_eq!(parse("M", &out, &err, 3, 1).unwrap()[0].stdout, "partial\n");
    }
}
