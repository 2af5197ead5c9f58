//! The `infalign` binary end to end: help, version, the two stable JSON forms of `theory`, the
//! plots it writes, and a clear error (never a panic) on a bad transform spec.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn infalign(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_infalign"))
        .args(args)
        .output()
        .expect("the infalign binary starts")
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "infalign failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("infalign-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn help_lists_the_subcommands() {
    let help = stdout_of(&infalign(&["--help"]));
    assert!(help.contains("Usage: infalign"), "{help}");
    for subcommand in ["theory", "backend"] {
        assert!(
            help.contains(subcommand),
            "`{subcommand}` missing from:\n{help}"
        );
    }
}

#[test]
fn version_is_the_package_version() {
    let version = stdout_of(&infalign(&["--version"]));
    assert_eq!(
        version.trim(),
        format!("infalign {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn theory_point_json_matches_the_identity_closed_form() {
    // Identity transform, lambda = 1: p(u) = e^u / (e - 1) on [0, 1], so
    // E[U] = 1 / (1 - e^-1) - 1 and KL = ln(1 / (e - 1)) + E[U].
    let out = stdout_of(&infalign(&[
        "theory",
        "point",
        "--transform",
        "identity",
        "--lambda",
        "1",
        "--n",
        "1",
        "--json",
    ]));
    let point: Value = serde_json::from_str(&out).expect("one JSON object");
    let e = std::f64::consts::E;
    let expected_u = 1.0 / (1.0 - 1.0 / e) - 1.0;
    let kl = (1.0 / (e - 1.0)).ln() + expected_u;
    let get = |path: &[&str]| {
        path.iter()
            .fold(&point, |value, key| &value[*key])
            .as_f64()
            .unwrap_or_else(|| panic!("{path:?} is not a number in {out}"))
    };
    assert!((get(&["kl"]) - kl).abs() < 1e-6, "{out}");
    assert!((get(&["expected_u"]) - expected_u).abs() < 1e-6, "{out}");
    // Against a uniform reference the standard win rate is E[U], and BoN_1 / WoN_1 are standard.
    for key in ["standard", "bon", "won"] {
        assert!(
            (get(&["win_rate", key]) - expected_u).abs() < 1e-6,
            "{key}: {out}"
        );
    }
}

#[test]
fn theory_table_json_has_the_documented_rows_and_writes_plots() {
    let dir = scratch_dir("table");
    let out = stdout_of(&infalign(&[
        "theory",
        "--n",
        "2",
        "--kl",
        "0.5",
        "--json",
        "--out-dir",
        dir.to_str().unwrap(),
    ]));
    let rows: Vec<Value> = serde_json::from_str(&out).expect("a JSON array of rows");
    assert_eq!(
        rows.len(),
        2 * 5,
        "two procedures x five transforms:\n{out}"
    );
    for procedure in ["bon", "won"] {
        let of = |transform: &str| {
            rows.iter()
                .find(|row| row["procedure"] == procedure && row["transform"] == transform)
                .unwrap_or_else(|| panic!("no {procedure}/{transform} row in {out}"))
        };
        for transform in ["identity", "log", "exp", "negexp", "optimal"] {
            let row = of(transform);
            assert_eq!(row["n"], 2, "{row}");
            assert_eq!(row["kl"], 0.5, "{row}");
            let win_rate = row["win_rate"].as_f64().expect("win_rate is a number");
            assert!((0.0..=1.0).contains(&win_rate), "{row}");
            match transform {
                "identity" | "log" | "optimal" => assert!(row["t"].is_null(), "{row}"),
                _ => assert!(row["t"].as_f64().is_some_and(|t| t > 0.0), "{row}"),
            }
        }
        // The optimal transform is the envelope: nothing beats it at the same KL.
        let best = of("optimal")["win_rate"].as_f64().unwrap();
        for transform in ["identity", "log", "exp", "negexp"] {
            let other = of(transform)["win_rate"].as_f64().unwrap();
            assert!(
                other <= best + 1e-6,
                "{procedure}: {transform} {other} > optimal {best}"
            );
        }
    }
    let svgs: Vec<_> = std::fs::read_dir(&dir)
        .expect("the output directory exists")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "svg"))
        .collect();
    assert!(!svgs.is_empty(), "no SVG plots in {}", dir.display());
    for svg in &svgs {
        let text = std::fs::read_to_string(svg).unwrap();
        assert!(
            text.trim_start().starts_with("<svg") && text.trim_end().ends_with("</svg>"),
            "{}",
            svg.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_transform_spec_is_a_clear_error_not_a_panic() {
    let output = infalign(&["theory", "point", "--transform", "exp:abc", "--lambda", "1"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("exp:abc"),
        "the error should name the value: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
