//! Cross-check against an independent arbitrary-precision computation (scripts/theory_check.py,
//! mpmath: closed-form CDFs through Ei / E1 and tanh-sinh quadrature).
//!
//! The Python interpreter is `$INFALIGN_PYTHON`, else `<repo>/.venv/bin/python`, else `python3`.
//! A missing interpreter or missing mpmath fails this test (it is never skipped).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use infalign_core::{theory, Transform};

fn repo_root() -> PathBuf {
    manifest_dir().join("../..")
}

fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("INFALIGN_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = repo_root().join(".venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

#[test]
fn engine_matches_mpmath() {
    let cases: &[(&str, f64, u32)] = &[
        ("identity", 0.5, 2),
        ("identity", 1e4, 64),
        ("log", 0.3, 4),
        ("log", 150.0, 64),
        ("normexp:2", 3.0, 8),
        ("normexp:30", 50.0, 4),
        ("normexp:400", 1e4, 64),
        ("normexp:400", 1.0, 2),
        ("normnegexp:2", 5.0, 4),
        ("normnegexp:30", 100.0, 8),
        ("normnegexp:400", 1e4, 64),
        ("exp:3", 0.7, 32),
        ("negexp:10", 20.0, 16),
    ];
    let input = serde_json::to_string(
        &cases
            .iter()
            .map(|(spec, lambda, n)| serde_json::json!({"transform": spec, "lambda": lambda, "n": n}))
            .collect::<Vec<_>>(),
    )
    .unwrap();

    let interpreter = python();
    let script = repo_root().join("scripts/theory_check.py");
    let mut child = Command::new(&interpreter)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start Python interpreter {} ({error}); set INFALIGN_PYTHON or create \
                 <repo>/.venv with `python3 -m venv .venv && .venv/bin/pip install mpmath numpy`",
                interpreter.display()
            )
        });
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("writing the cases to theory_check.py");
    let output = child
        .wait_with_output()
        .expect("waiting for theory_check.py");
    assert!(
        output.status.success(),
        "{} {} failed ({}); is mpmath installed for that interpreter? stderr:\n{}",
        interpreter.display(),
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let reference: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).expect("theory_check.py prints a JSON array");
    assert_eq!(reference.len(), cases.len());

    for ((spec, lambda, n), expected) in cases.iter().zip(&reference) {
        let transform: Transform = spec.parse().unwrap();
        let got = theory::evaluate(&transform, *lambda, *n).unwrap();
        let field = |name: &str| expected[name].as_f64().expect("numeric field");
        for (name, value, tolerance) in [
            ("kl", got.kl, 1e-9 * field("kl").abs().max(1.0)),
            ("expected_u", got.expected_u, 1e-9),
            ("standard", got.win_rate.standard, 1e-9),
            ("bon", got.win_rate.bon, 1e-9),
            ("won", got.win_rate.won, 1e-9),
        ] {
            assert!(
                (value - field(name)).abs() <= tolerance,
                "{spec} lambda {lambda} N {n}: {name} = {value:.15} but mpmath gives {:.15}",
                field(name)
            );
        }
    }
}

/// The crate's directory. `cargo test` sets it at run time; that wins over the compile-time value,
/// which goes stale when a cached test binary is reused from a checkout at another path (CI's
/// shared target directory).
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
