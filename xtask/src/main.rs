//! Project automation, run as `cargo xtask <command>`.
//!
//! - `setup`: install what is missing (wasm32 toolchain, trunk, wasm-bindgen-cli, Chromium, a
//!   software Vulkan driver, Python and Node test dependencies). Safe to rerun.
//! - `build-web`: build the browser lab with Trunk into `dist/`.
//! - `serve`: build it and serve `dist/` on localhost.
//! - `test`: the whole test suite (native crates, then the browser tests against the built page).
//! - `ci`: a formatting check, then `test`.
//! - `bench`: our training step, sampling, CTRL step and analytic engine against PyTorch and
//!   NumPy, side by side.
//!
//! `serve` and `test` run `setup` first, so a fresh clone needs only those two commands.

mod bench;
mod serve;
mod setup;
mod summary;
mod toolchain;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "InfAlign Lab project automation")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install whatever is missing for building, serving and testing. Safe to rerun.
    Setup,
    /// Build the browser lab into dist/ (release: small and fast).
    BuildWeb {
        /// Build the unoptimised debug profile instead (faster to build, much slower to run).
        #[arg(long, conflicts_with = "ci")]
        dev: bool,
        /// Build the profile the browser tests load (web-ci: release code paths, quicker to
        /// build), into the target directory's `web-test-dist/` (the tests' INFALIGN_DIST).
        #[arg(long)]
        ci: bool,
    },
    /// Build the browser lab and serve it on localhost.
    Serve {
        /// Port to listen on (0 picks a free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Serve the existing dist/ without rebuilding it.
        #[arg(long)]
        no_build: bool,
    },
    /// Run the whole test suite: native crates, then the browser tests.
    Test {
        /// Only the native crates (no web build, no browser).
        #[arg(long)]
        native_only: bool,
    },
    /// What CI runs: a formatting check, then the whole test suite.
    Ci,
    /// Benchmarks against PyTorch and NumPy, run side by side (a table, and JSON).
    Bench(bench::BenchArgs),
    /// CTRL inside a training engine: installs PyTorch, transformers and TRL in `.venv` (PyTorch
    /// is gigabytes, so not part of CI), then runs `scripts/engines/trl_run.py` (a few RLOO steps
    /// with the calibrated, transformed reward, evaluated back by `infalign eval --scored`) and
    /// `scripts/hf_export_check.py`.
    Engines {
        /// Where the run writes (its log, the TRL run, the evaluation).
        #[arg(long, default_value = "target/engines")]
        out: PathBuf,
        /// RLOO steps.
        #[arg(long, default_value_t = 4)]
        steps: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Setup => setup::run(),
        Task::BuildWeb { dev, ci } => build_web(if dev {
            WebProfile::Dev
        } else if ci {
            WebProfile::Ci
        } else {
            WebProfile::Release
        }),
        Task::Serve {
            port,
            host,
            no_build,
        } => if no_build {
            Ok(())
        } else {
            setup::run().and_then(|()| build_web(WebProfile::Release))
        }
        .and_then(|()| serve::serve(&repo_root().join("dist"), &host, port)),
        Task::Test { native_only } => test(native_only),
        Task::Ci => ci(),
        Task::Bench(args) => bench::run(args),
        Task::Engines { out, steps } => engines(&out, steps),
    };
    if let Err(error) = result {
        eprintln!("xtask: error: {error:#}");
        std::process::exit(1);
    }
}

/// The repository root (the parent of this crate's folder).
/// Cargo's target directory: `CARGO_TARGET_DIR`, else `target/` in the repository.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

pub fn repo_root() -> PathBuf {
    // `cargo run` sets CARGO_MANIFEST_DIR for the process it starts. Prefer that to the path
    // compiled in: a shared target directory can hold an xtask binary built from another clone.
    // A binary carried to another machine (the GPU one) runs from the repository's root.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    match Path::new(&manifest_dir).parent() {
        Some(root) if root.join("Cargo.toml").is_file() => root.to_path_buf(),
        _ => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    }
}

/// Print a command the way a person would type it, then run it; fail on a non-zero exit.
pub fn run_command(command: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", describe(command));
    let status = command
        .status()
        .with_context(|| format!("could not start `{}`", describe(command)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(command));
    }
    Ok(())
}

pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which cargo profile Trunk builds the web app with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WebProfile {
    /// `dev`: unoptimised, quickest to build.
    Dev,
    /// `web-release`: what people load (size-optimised, LTO, one codegen unit).
    Release,
    /// `web-ci`: what the browser tests load; the release code paths (abort on panic, no debug
    /// assertions) without LTO and size optimisation, which cost most of a cold CI build.
    Ci,
}

impl WebProfile {
    /// Where Trunk writes this profile's build. The tests' build goes under the target
    /// directory, so `cargo xtask test` never rewrites the `dist/` a running `cargo xtask serve`
    /// serves.
    fn dist(self, root: &Path) -> PathBuf {
        match self {
            WebProfile::Dev | WebProfile::Release => root.join("dist"),
            WebProfile::Ci => target_dir(root).join("web-test-dist"),
        }
    }
}

/// Send a command's output to the end of `log` instead of this terminal.
pub fn log_to(command: &mut Command, log: &Path) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    command.stdout(file.try_clone()?).stderr(file);
    Ok(())
}

/// Build the web app with Trunk, using whichever wasm32 toolchain this machine has.
fn build_web(profile: WebProfile) -> Result<()> {
    build_web_logged(profile, None)
}

/// [`build_web`], with Trunk's output going to `log` instead of this terminal when given.
fn build_web_logged(profile: WebProfile, log: Option<&Path>) -> Result<()> {
    let root = repo_root();
    let wasm = toolchain::WasmToolchain::detect().context(
        "no wasm32 toolchain: run `cargo xtask setup` (or `rustup target add wasm32-unknown-unknown`)",
    )?;
    let dist = profile.dist(&root);
    let mut trunk = Command::new("trunk");
    trunk
        .current_dir(&root)
        .arg("build")
        .arg("--dist")
        .arg(&dist);
    match profile {
        WebProfile::Dev => {}
        WebProfile::Release => {
            trunk.args(["--release", "--cargo-profile", "web-release"]);
        }
        WebProfile::Ci => {
            trunk.args(["--release", "--cargo-profile", "web-ci"]);
        }
    }
    wasm.configure(&mut trunk);
    if let Some(log) = log {
        log_to(&mut trunk, log)?;
    }
    run_command(&mut trunk)?;
    let wasm_files: Vec<_> = std::fs::read_dir(&dist)?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    for file in wasm_files {
        let size = file.metadata()?.len();
        eprintln!(
            "xtask: built {} ({:.1} MB)",
            file.path().display(),
            size as f64 / 1e6
        );
    }
    if profile == WebProfile::Ci {
        eprintln!(
            "xtask: the browser tests load it with INFALIGN_DIST={}",
            dist.display()
        );
    }
    Ok(())
}

/// The README's test command.
/// Build and install `crates/infalign-py` into the project's virtual environment, then run its
/// tests against the `infalign` binary of the native build.
fn python_package(root: &Path) -> Result<summary::Counts> {
    let python = setup::python_with(root, PYTHON_PACKAGE_TOOLS)?;
    let bin_dir = python
        .parent()
        .context("the virtual environment's python has no folder")?
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))?;
    let target = target_dir(root);
    let mut install = Command::new(&python);
    install
        .current_dir(root)
        .env("PATH", &path)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-build-isolation",
            "./crates/infalign-py",
        ]);
    if !summary::run_stage(&mut install)?.ok() {
        return Ok(summary::Counts::failed_stage());
    }
    let mut pytest = Command::new(&python);
    pytest
        .current_dir(root)
        .env("INFALIGN_BIN", target.join("debug/infalign"))
        .args(["-m", "pytest", "-q", "crates/infalign-py/tests"]);
    summary::run_and_count(&mut pytest, summary::Runner::Pytest)
}

/// The engines `cargo xtask engines` runs in (pinned; PyPI's torch wheel).
const ENGINE_PACKAGES: &[&str] = &[
    "torch==2.9.1",
    "transformers==5.25.0",
    "trl==1.16.0",
    "datasets==5.2.0",
    "accelerate==1.16.0",
    "vaderSentiment==3.3.2",
];

/// `cargo xtask engines`: the package, the engines, the TRL run and the export check.
fn engines(out: &Path, steps: usize) -> Result<()> {
    let root = repo_root();
    let out = if out.is_absolute() {
        out.to_path_buf()
    } else {
        root.join(out)
    };
    setup::run_base()?;
    let python = setup::python_with(&root, ENGINE_PACKAGES)?;
    if !python_package(&root)?.ok() {
        bail!("the Python package's build or tests failed");
    }
    run_command(Command::new(env!("CARGO")).current_dir(&root).args([
        "build",
        "--workspace",
        "--exclude",
        "infalign-web",
        "--bin",
        "infalign",
    ]))?;
    let target = target_dir(&root);
    let infalign = target.join("debug/infalign");
    run_command(
        Command::new(&python)
            .current_dir(&root)
            .arg("scripts/engines/trl_run.py")
            .arg("--infalign")
            .arg(&infalign)
            .arg("--out")
            .arg(&out)
            .args(["--steps", &steps.to_string()]),
    )?;
    let policy = out.join("base.safetensors");
    run_command(
        Command::new(&python)
            .current_dir(&root)
            .arg("scripts/hf_export_check.py")
            .arg(&policy)
            .arg("static/default-model/tokenizer.json"),
    )
}

/// What building and testing the Python package needs in the virtual environment (pinned).
const PYTHON_PACKAGE_TOOLS: &[&str] = &["maturin==1.16.0", "pytest==9.2.0", "numpy==2.2.6"];

fn test(native_only: bool) -> Result<()> {
    setup::run_base()?;
    let root = repo_root();
    let mut totals = summary::Totals::default();

    // The web track (installing trunk and wasm-bindgen-cli when missing, then the web build)
    // and the native tests share nothing but the target directory (different targets and
    // profiles, so no cargo lock between them): run them side by side, so that one fills the
    // core the other leaves idle in its single-crate stretches and its final links.
    let web_log =
        std::env::temp_dir().join(format!("infalign-web-build-{}.log", std::process::id()));
    let web_build = (!native_only).then(|| {
        eprintln!(
            "xtask: == web tools and web build, in the background (log: {}) ==",
            web_log.display()
        );
        let log = web_log.clone();
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let result = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))
                .and_then(|_| setup::install_web_tools(Some(&log)))
                .and_then(|()| build_web_logged(WebProfile::Ci, Some(&log)));
            (result, start.elapsed())
        })
    });

    eprintln!("xtask: == native tests ==");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.current_dir(&root).args([
        "test",
        "--workspace",
        "--exclude",
        "infalign-web",
        "--no-fail-fast",
    ]);
    // Mesa's software Vulkan driver complains on every device it opens when there is no
    // XDG_RUNTIME_DIR (as in CI containers); give it a private one so the log stays readable.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let runtime_dir = std::env::temp_dir().join("infalign-xdg-runtime");
        std::fs::create_dir_all(&runtime_dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&runtime_dir, std::fs::Permissions::from_mode(0o700))?;
        }
        cargo.env("XDG_RUNTIME_DIR", runtime_dir);
    }
    let native = summary::run_and_count(&mut cargo, summary::Runner::Cargo)?;
    totals.add("native (cargo test)", native);

    // Every figure in results/ that has its per-reply data is recomputed from the definitions
    // by an independent script (Python's standard library only), after the script's own tests.
    eprintln!("xtask: == results recomputed from their raw data ==");
    let mut unit = Command::new("python3");
    unit.current_dir(&root)
        .args(["-m", "unittest", "scripts/test_recompute_results.py"]);
    totals.add(
        "recompute script (unittest)",
        summary::run_stage(&mut unit)?,
    );
    let mut recompute = Command::new("python3");
    recompute
        .current_dir(&root)
        .args(["scripts/recompute_results.py", "--strict", "results"]);
    totals.add("results recomputed", summary::run_stage(&mut recompute)?);

    // The Python package (crates/infalign-py, its own workspace): built and installed into the
    // virtual environment by maturin, then its tests, which compare it with the command the
    // native stage built.
    eprintln!("xtask: == the Python package: build, install, pytest ==");
    totals.add("python package (pytest)", python_package(&root)?);

    if let Some(web_build) = web_build {
        let (result, elapsed) = web_build
            .join()
            .map_err(|_| anyhow::anyhow!("the web build thread panicked"))?;
        match result {
            Ok(()) => {
                eprintln!(
                    "xtask: web tools and build finished in {:.0} s",
                    elapsed.as_secs_f64()
                );
                eprintln!("xtask: == browser tests ==");
                let mut node = Command::new("node");
                node.current_dir(&root)
                    .args(["--test", "--test-reporter=spec", "--test-concurrency=1"])
                    .args([
                        "tests/browser/lab.test.mjs",
                        "tests/browser/explorer.test.mjs",
                        "tests/browser/sampling.test.mjs",
                        "tests/browser/train.test.mjs",
                    ])
                    .env("INFALIGN_DIST", WebProfile::Ci.dist(&root));
                let browser = summary::run_and_count(&mut node, summary::Runner::Node)?;
                totals.add("browser (playwright)", browser);
            }
            Err(error) => {
                let log = std::fs::read_to_string(&web_log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                eprintln!("xtask: last lines of {}:", web_log.display());
                for line in &lines[lines.len().saturating_sub(80)..] {
                    eprintln!("{line}");
                }
                eprintln!("xtask: the web build failed: {error:#}");
                totals.add("web build", summary::Counts::failed_stage());
            }
        }
    }
    totals.report()
}

fn ci() -> Result<()> {
    let root = repo_root();
    let mut fmt = Command::new(env!("CARGO"));
    fmt.current_dir(&root)
        .args(["fmt", "--all", "--", "--check"]);
    run_command(&mut fmt).context("formatting differs: run `cargo fmt --all`")?;
    test(false)
}
