//! Run a test runner, stream its output, and count what passed and failed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Which runner's summary lines to read.
#[derive(Debug, Clone, Copy)]
pub enum Runner {
    /// `test result: ok. 12 passed; 0 failed; ...`
    Cargo,
    /// Node's spec reporter: `ℹ pass 2` / `ℹ fail 0`.
    Node,
    /// pytest's last line: `2 failed, 15 passed in 0.19s` (with `-q`, undecorated).
    Pytest,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    /// The runner itself exited non-zero (a build error, a crash, a failed test).
    pub runner_failed: bool,
}

impl Counts {
    /// Whether nothing failed.
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    /// A stage that could not run at all counts as one failure.
    pub fn failed_stage() -> Self {
        Self {
            passed: 0,
            failed: 1,
            runner_failed: true,
        }
    }
}

/// Run `command`, echo its standard output line by line, and add up its summary lines.
pub fn run_and_count(command: &mut Command, runner: Runner) -> Result<Counts> {
    eprintln!("xtask: $ {}", crate::describe(command));
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{}`", crate::describe(command)))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut counts = Counts::default();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        parse_line(&line, runner, &mut counts);
    }
    let status = child.wait()?;
    counts.runner_failed = !status.success();
    if counts.runner_failed && counts.failed == 0 {
        // A build error or a crash: no test failed, yet the stage did not pass.
        counts.failed = 1;
    }
    Ok(counts)
}

/// Run `command` as one check that passes or fails as a whole (its output passes through).
pub fn run_stage(command: &mut Command) -> Result<Counts> {
    eprintln!("xtask: $ {}", crate::describe(command));
    let status = command
        .status()
        .with_context(|| format!("could not start `{}`", crate::describe(command)))?;
    Ok(if status.success() {
        Counts {
            passed: 1,
            ..Counts::default()
        }
    } else {
        Counts::failed_stage()
    })
}

fn number_before(text: &str, word: &str) -> Option<u64> {
    let end = text.find(word)?;
    text[..end].split_whitespace().last()?.parse().ok()
}

fn parse_line(line: &str, runner: Runner, counts: &mut Counts) {
    match runner {
        Runner::Cargo => {
            if let Some(rest) = line.strip_prefix("test result: ") {
                counts.passed += number_before(rest, " passed").unwrap_or(0);
                counts.failed += number_before(rest, " failed").unwrap_or(0);
            }
        }
        Runner::Node => {
            let trimmed = line.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
            if let Some(n) = trimmed.strip_prefix("pass ") {
                counts.passed += n.trim().parse().unwrap_or(0);
            } else if let Some(n) = trimmed.strip_prefix("fail ") {
                counts.failed += n.trim().parse().unwrap_or(0);
            }
        }
        Runner::Pytest => {
            let line = line.trim().trim_matches('=').trim();
            if line.contains(" in ") && (line.contains(" passed") || line.contains(" failed")) {
                counts.passed += number_before(line, " passed").unwrap_or(0);
                counts.failed += number_before(line, " failed").unwrap_or(0);
                counts.failed += number_before(line, " error").unwrap_or(0);
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct Totals {
    stages: Vec<(&'static str, Counts)>,
}

impl Totals {
    pub fn add(&mut self, stage: &'static str, counts: Counts) {
        self.stages.push((stage, counts));
    }

    /// Print one line per stage and the final `N passed, N failed` line; fail if anything failed.
    pub fn report(&self) -> Result<()> {
        println!();
        let (mut passed, mut failed) = (0, 0);
        for (stage, counts) in &self.stages {
            println!(
                "{stage}: {} passed, {} failed{}",
                counts.passed,
                counts.failed,
                if counts.runner_failed {
                    " (runner exited with an error)"
                } else {
                    ""
                }
            );
            passed += counts.passed;
            failed += counts.failed;
        }
        println!("{passed} passed, {failed} failed");
        if failed > 0 {
            bail!("{failed} test(s) failed");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_summaries() {
        let mut counts = Counts::default();
        parse_line(
            "test result: ok. 12 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            Runner::Cargo,
            &mut counts,
        );
        parse_line(
            "test result: ok. 1 passed; 0 failed; 0 ignored",
            Runner::Cargo,
            &mut counts,
        );
        parse_line("running 12 tests", Runner::Cargo, &mut counts);
        assert_eq!((counts.passed, counts.failed), (13, 3));
    }

    #[test]
    fn reads_pytest_summaries() {
        let mut counts = Counts::default();
        for line in [
            "....F",
            "2 failed, 15 passed in 0.19s",
            "tests/test_core.py::x PASSED",
        ] {
            parse_line(line, Runner::Pytest, &mut counts);
        }
        assert_eq!((counts.passed, counts.failed), (15, 2));
        let mut counts = Counts::default();
        parse_line("==== 17 passed in 0.20s ====", Runner::Pytest, &mut counts);
        parse_line("1 passed, 1 error in 0.3s", Runner::Pytest, &mut counts);
        assert_eq!((counts.passed, counts.failed), (18, 1));
    }

    #[test]
    fn reads_node_spec_summaries() {
        let mut counts = Counts::default();
        for line in ["ℹ tests 4", "ℹ pass 3", "ℹ fail 1", "ℹ duration_ms 12"] {
            parse_line(line, Runner::Node, &mut counts);
        }
        assert_eq!((counts.passed, counts.failed), (3, 1));
    }
}
