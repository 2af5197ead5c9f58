//! Which wasm32 toolchain this machine has, and how to point cargo (through Trunk) at it.
//!
//! Two routes, preferred in this order:
//! 1. rustup's `wasm32-unknown-unknown` target, the normal path on a machine with internet;
//! 2. Debian's `rustc-web` toolchain (in /usr/bin) with the standard library built from source
//!    (`-Z build-std`), for machines where rustup's servers cannot be reached.

use std::path::Path;
use std::process::Command;

/// Where Debian's `rust-web-src` package puts the standard library's sources.
pub const DEBIAN_RUST_SRC: &str = "/usr/lib/rustlib/src/rust/library";
/// Debian's `rustc-web` compiler.
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmToolchain {
    /// rustup's toolchain has the wasm32 target installed.
    Rustup,
    /// Debian's rustc-web with std built from source.
    DebianBuildStd,
}

impl WasmToolchain {
    pub fn detect() -> Option<Self> {
        if rustup_has_wasm_target() {
            Some(Self::Rustup)
        } else if debian_toolchain_present() {
            Some(Self::DebianBuildStd)
        } else {
            None
        }
    }

    /// Set up the environment of a command (Trunk, or cargo itself) that builds for wasm32.
    pub fn configure(self, command: &mut Command) {
        match self {
            Self::Rustup => {}
            Self::DebianBuildStd => {
                // Put /usr/bin first so that Trunk's `cargo` is Debian's, and drop what rustup's
                // proxies set for the outer cargo, so nothing points back at the rustup toolchain.
                let path = std::env::var("PATH").unwrap_or_default();
                command
                    .env("PATH", format!("/usr/bin:{path}"))
                    .env("RUSTC", DEBIAN_RUSTC)
                    .env("RUSTC_BOOTSTRAP", "1")
                    .env("CARGO_UNSTABLE_BUILD_STD", "std,panic_abort")
                    .env_remove("RUSTUP_TOOLCHAIN")
                    .env_remove("RUSTDOC")
                    .env_remove("CARGO")
                    .env_remove("RUSTC_WRAPPER");
            }
        }
    }
}

pub fn rustup_has_wasm_target() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|output| {
            output.status.success()
                && String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .any(|line| line.trim() == "wasm32-unknown-unknown")
        })
        .unwrap_or(false)
}

pub fn debian_toolchain_present() -> bool {
    Path::new(DEBIAN_RUSTC).exists()
        && Path::new("/usr/bin/cargo").exists()
        && Path::new(DEBIAN_RUST_SRC).exists()
        && Path::new("/usr/bin/rust-lld").exists()
}
