//! `hv build GUEST.rs`: a Rust guest to a size-optimised `.wasm` module.
//!
//! The guest SDK (`drivers/sdk`) travels inside `hv` as source: the first build with a
//! given compiler writes it to the cache (`$XDG_CACHE_HOME/hyperverse` or
//! `~/.cache/hyperverse`) and compiles it there once. The compiler is `$HV_RUSTC`, else
//! Debian's `/usr/bin/rustc` (1.63, with `libstd-rust-dev-wasm32`), else `rustc` on the
//! path — the first that has the `wasm32-unknown-unknown` target. What was built is
//! checked as activation would check it ([`drivers::mechtron::check_module`]), so a
//! module the host would refuse fails here, not at `hv create`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hyperverse_core::registry::content_hash;
use hyperverse_core::{Error, Result};

/// The SDK's sources, as `hv` was built with them.
const SDK: &[(&str, &str)] = &[
    ("lib.rs", include_str!("../../../../drivers/sdk/src/lib.rs")),
    (
        "host.rs",
        include_str!("../../../../drivers/sdk/src/host.rs"),
    ),
    (
        "read.rs",
        include_str!("../../../../drivers/sdk/src/read.rs"),
    ),
    (
        "runtime.rs",
        include_str!("../../../../drivers/sdk/src/runtime.rs"),
    ),
    (
        "wave.rs",
        include_str!("../../../../drivers/sdk/src/wave.rs"),
    ),
];

/// The SDK's crate name, as guests `use` it.
const SDK_CRATE: &str = "hyperverse_guest";

const TARGET: &str = "wasm32-unknown-unknown";

/// Code generation for the SDK and the guest: small, no unwinding (a panic traps), and
/// the stack pointer exported, as the ABI asks of every mutable global.
const CODEGEN: &[&str] = &[
    "-C",
    "opt-level=z",
    "-C",
    "panic=abort",
    "-C",
    "codegen-units=1",
    "-C",
    "target-feature=+mutable-globals",
];

/// The guest's stack by default: 64 KiB. rustc's own default, 1 MiB, is part of the
/// linear memory and so of every snapshot the host saves: a 1 MiB stack made the Rust
/// echo's snapshots 17 pages instead of 2, and its waves a third as fast
/// (docs/benchmarks.md, "Rust guests").
pub const DEFAULT_STACK: u32 = 64 * 1024;

/// Builds `source` into `out` (default: beside it, `.wasm`) with a stack of `stack`
/// bytes; what to print.
pub fn build(source: &Path, out: Option<PathBuf>, stack: u32) -> Result<String> {
    if !source.is_file() {
        return Err(Error::bad_request(format!(
            "{} is not a file: give the guest's Rust source (a crate root such as lib.rs)",
            source.display()
        )));
    }
    let rustc = compiler()?;
    let sdk = sdk(&rustc)?;
    let out = out.unwrap_or_else(|| source.with_extension("wasm"));
    // rustc leaves object files beside its output: build in a directory of our own, so
    // that two builds of one guest at once do not trip over each other's.
    let scratch = tempfile::Builder::new()
        .prefix("hv-build-")
        .tempdir()
        .map_err(|e| Error::internal(format!("making a build directory: {e}")))?;
    let built = scratch.path().join("guest.wasm");
    let mut extern_sdk = OsString::from(format!("{SDK_CRATE}="));
    extern_sdk.push(sdk.join(format!("lib{SDK_CRATE}.rlib")));
    let mut dependency = OsString::from("dependency=");
    dependency.push(&sdk);
    let status = Command::new(&rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "cdylib",
            "--crate-name",
            "guest",
        ])
        .args(["--target", TARGET])
        .args(CODEGEN)
        .args(["-C", "lto", "-C", "strip=symbols"])
        .args(["-C", "link-arg=--export=__stack_pointer"])
        .arg("-C")
        .arg(format!("link-arg=-zstack-size={stack}"))
        .arg("--extern")
        .arg(extern_sdk)
        .arg("-L")
        .arg(dependency)
        .arg(source)
        .arg("-o")
        .arg(&built)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::internal(format!("running {}: {e}", rustc.display())))?;
    if !status.success() {
        return Err(Error::bad_request(format!(
            "{} did not build {} (its messages are above)",
            rustc.display(),
            source.display()
        )));
    }
    let wasm = std::fs::read(&built)
        .map_err(|e| Error::internal(format!("reading {}: {e}", built.display())))?;
    drivers::mechtron::check_module(&out.display().to_string(), &wasm)?;
    std::fs::write(&out, &wasm).map_err(|e| io_error(&out, e))?;
    Ok(format!("{} ({} bytes)\n", out.display(), wasm.len()))
}

/// The first compiler that can build for wasm32 (see the module doc).
fn compiler() -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("HV_RUSTC") {
        Some(rustc) => vec![rustc.into()],
        None => vec!["/usr/bin/rustc".into(), "rustc".into()],
    };
    candidates
        .into_iter()
        .find(|rustc| has_wasm32(rustc))
        .ok_or_else(|| {
            Error::bad_request(
                "no Rust compiler here builds for wasm32-unknown-unknown: install Debian's \
                 (`apt-get install rustc libstd-rust-dev-wasm32 lld`), or add the target \
                 with rustup, or name a compiler with HV_RUSTC",
            )
        })
}

/// Whether `rustc` runs and has the wasm32 target's core library.
fn has_wasm32(rustc: &Path) -> bool {
    let Ok(out) = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    let libdir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    out.status.success()
        && std::fs::read_dir(libdir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
        })
}

/// The directory holding the SDK compiled by `rustc`, compiling it first if needed.
fn sdk(rustc: &Path) -> Result<PathBuf> {
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .map_err(|e| Error::internal(format!("running {}: {e}", rustc.display())))?
        .stdout;
    let mut key = version;
    for (name, text) in SDK {
        key.extend_from_slice(name.as_bytes());
        key.extend_from_slice(text.as_bytes());
    }
    let dir = cache_root()?
        .join("guest-sdk")
        .join(&content_hash(&key)[..16]);
    if dir.join(format!("lib{SDK_CRATE}.rlib")).is_file() {
        return Ok(dir);
    }
    // Built aside and moved in whole, so an interrupted build leaves nothing half-made.
    let scratch = dir.with_extension(format!("tmp{}", std::process::id()));
    let src = scratch.join("src");
    std::fs::create_dir_all(&src).map_err(|e| io_error(&src, e))?;
    for (name, text) in SDK {
        std::fs::write(src.join(name), text).map_err(|e| io_error(&src, e))?;
    }
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "rlib",
            "--crate-name",
            SDK_CRATE,
        ])
        .args(["--target", TARGET])
        .args(CODEGEN)
        .arg(src.join("lib.rs"))
        .arg("--out-dir")
        .arg(&scratch)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::internal(format!("running {}: {e}", rustc.display())))?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(Error::internal(format!(
            "{} did not build the guest SDK (its messages are above)",
            rustc.display()
        )));
    }
    match std::fs::rename(&scratch, &dir) {
        Ok(()) => Ok(dir),
        // Another build got there first: its copy is as good.
        Err(_) if dir.join(format!("lib{SDK_CRATE}.rlib")).is_file() => {
            let _ = std::fs::remove_dir_all(&scratch);
            Ok(dir)
        }
        Err(e) => Err(io_error(&dir, e)),
    }
}

/// `$XDG_CACHE_HOME/hyperverse`, else `~/.cache/hyperverse`.
fn cache_root() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or_else(|| {
            Error::bad_request("set HOME or XDG_CACHE_HOME: hv build keeps the SDK there")
        })?;
    let root = base.join("hyperverse");
    std::fs::create_dir_all(&root).map_err(|e| io_error(&root, e))?;
    Ok(root)
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::internal(format!("{}: {e}", path.display()))
}
