//! `cargo xtask setup`: install only what is missing; safe to rerun.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::toolchain::{self, WasmToolchain};
use crate::{repo_root, run_command};

/// Trunk 0.22 needs a newer rustc than this project's minimum; 0.21.14 is the last that fits.
const TRUNK_VERSION: &str = "0.21.14";
/// Python packages for the numerical cross-checks and the NumPy benchmark peer.
const PYTHON_PACKAGES: &[&str] = &["mpmath==1.3.0", "numpy==2.2.6"];

/// Everything: the base, then the web build tools.
pub fn run() -> Result<()> {
    run_base()?;
    install_web_tools(None)?;
    eprintln!("setup: done");
    Ok(())
}

/// What the native tests and the browser test runner need: the wasm32 toolchain, system
/// packages, the Python and Node dependencies. Quick; the web build tools come separately, so
/// `cargo xtask test` can compile them while the native tests build.
pub fn run_base() -> Result<()> {
    let root = repo_root();
    let mut apt = AptPlan::default();

    // The wasm32 toolchain: rustup's target when present, else Debian's rustc-web route.
    match WasmToolchain::detect() {
        Some(found) => eprintln!("setup: wasm32 toolchain: {found:?}"),
        None => {
            let added = Command::new("rustup")
                .args(["target", "add", "wasm32-unknown-unknown"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !added || !toolchain::rustup_has_wasm_target() {
                eprintln!(
                    "setup: rustup cannot add wasm32-unknown-unknown here; using Debian's rustc-web"
                );
                apt.want(&[
                    "rustc-web",
                    "cargo-web",
                    "rust-web-src",
                    "rust-web-llvm",
                    "lld-22",
                ]);
            }
        }
    }
    // A browser for the end-to-end tests, and a software Vulkan driver for native wgpu tests.
    if !Path::new(&chromium_path()).exists() {
        apt.want(&["chromium"]);
    }
    apt.want_missing_packages(&["mesa-vulkan-drivers", "libvulkan1"]);
    apt.install()?;

    setup_python(&root)?;
    setup_node(&root)
}

/// Trunk and the wasm-bindgen-cli that matches Cargo.lock, each only when missing. With `log`,
/// cargo's output goes there instead of this terminal.
pub fn install_web_tools(log: Option<&Path>) -> Result<()> {
    let root = repo_root();
    install_cargo_tool("trunk", "trunk", TRUNK_VERSION, true, log)?;
    let bindgen = wasm_bindgen_version(&root)?;
    // No --locked: the registry mirror lacks one of its locked dependencies.
    install_cargo_tool("wasm-bindgen", "wasm-bindgen-cli", &bindgen, false, log)?;
    eprintln!(
        "setup: wasm-opt: not used (data-wasm-opt=\"0\"); the web-release profile sizes the binary"
    );
    Ok(())
}

/// Chromium for the browser tests (`INFALIGN_CHROMIUM` overrides).
pub fn chromium_path() -> String {
    std::env::var("INFALIGN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string())
}

#[derive(Default)]
struct AptPlan {
    packages: Vec<String>,
}

impl AptPlan {
    fn want(&mut self, packages: &[&str]) {
        self.packages.extend(packages.iter().map(|p| p.to_string()));
    }

    fn want_missing_packages(&mut self, packages: &[&str]) {
        for package in packages {
            let installed = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", package])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false);
            if !installed {
                self.packages.push(package.to_string());
            }
        }
    }

    fn install(&self) -> Result<()> {
        if self.packages.is_empty() {
            eprintln!("setup: system packages: all present");
            return Ok(());
        }
        if Command::new("apt-get").arg("--version").output().is_err() {
            bail!(
                "missing system packages {:?} and no apt-get here: install their equivalents by hand",
                self.packages
            );
        }
        let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
        let apt = |args: &[&str]| {
            let mut command = Command::new(sudo.first().copied().unwrap_or("apt-get"));
            if !sudo.is_empty() {
                command.arg("apt-get");
            }
            command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
            command
        };
        run_command(&mut apt(&["update", "-qq"]))?;
        let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
        install.args(&self.packages);
        run_command(&mut install)
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `cargo install` a tool unless `binary --version` already reports `version`.
fn install_cargo_tool(
    binary: &str,
    package: &str,
    version: &str,
    locked: bool,
    log: Option<&Path>,
) -> Result<()> {
    let current = Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(current) = &current {
        if current.split_whitespace().any(|word| word == version) {
            eprintln!("setup: {binary}: {current}");
            return Ok(());
        }
        eprintln!("setup: {binary}: found {current}, need {version}");
    }
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["install", &format!("{package}@{version}")]);
    if locked {
        cargo.arg("--locked");
    }
    // These are build tools, run for seconds: trade their peak speed for a faster install.
    // Trunk's own release profile asks for fat LTO and one codegen unit, which on two cores
    // costs many minutes of a cold CI run. Installs go to their own target directory, so
    // the project's builds never see these overrides; it is one directory for all tools, so
    // the dependencies trunk and wasm-bindgen-cli share (serde, syn, clap, ...) build once.
    cargo
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env_remove("CARGO_TARGET_DIR")
        .arg("--target-dir")
        .arg(std::env::temp_dir().join("infalign-tool-build"));
    if let Some(log) = log {
        crate::log_to(&mut cargo, log)?;
    }
    run_command(&mut cargo)
}

/// The wasm-bindgen version that Cargo.lock pins; the CLI must match it exactly.
fn wasm_bindgen_version(root: &Path) -> Result<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock"))
        .with_context(|| format!("reading {}", root.join("Cargo.lock").display()))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\"" {
            if let Some(version) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
            {
                return Ok(version.to_string());
            }
        }
    }
    bail!("Cargo.lock has no wasm-bindgen package")
}

/// A virtual environment at `.venv` with the Python packages the tests and benchmarks use.
fn setup_python(root: &Path) -> Result<()> {
    python_with(root, &[]).map(|_| ())
}

/// `.venv` with [`PYTHON_PACKAGES`] and `extra` (pinned with `==`), installing only what is
/// missing; returns the environment's python.
pub fn python_with(root: &Path, extra: &[&str]) -> Result<std::path::PathBuf> {
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run_command(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    let packages: Vec<&str> = PYTHON_PACKAGES.iter().chain(extra).copied().collect();
    // Present means installed at exactly the pinned versions, so every machine computes the
    // cross-checks and the benchmarks with the same code.
    let pins = packages
        .iter()
        .map(|pin| {
            let (name, version) = pin.split_once("==").expect("packages are pinned with ==");
            format!("('{name}', '{version}')")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let check = format!(
        "import importlib.metadata as m, sys\n\
         def have(name, version):\n    try: return m.version(name) == version\n    except m.PackageNotFoundError: return False\n\
         sys.exit(0 if all(have(n, v) for n, v in [{pins}]) else 1)"
    );
    let have_all = Command::new(&python)
        .args(["-c", &check])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if have_all {
        eprintln!("setup: python packages: present in {}", venv.display());
        return Ok(python);
    }
    run_command(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(&packages),
    )?;
    Ok(python)
}

/// The browser tests' Node packages, exactly as the committed lock file says.
fn setup_node(root: &Path) -> Result<()> {
    let dir = root.join("tests/browser");
    let marker = dir.join("node_modules/.package-lock.json");
    let lock = dir.join("package-lock.json");
    let up_to_date = match (marker.metadata(), lock.metadata()) {
        (Ok(m), Ok(l)) => m.modified()? >= l.modified()?,
        _ => false,
    };
    if up_to_date {
        eprintln!("setup: node packages: present");
        return Ok(());
    }
    run_command(
        Command::new("npm")
            .current_dir(&dir)
            .args(["ci", "--no-audit", "--no-fund"]),
    )
}
