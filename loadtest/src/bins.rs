//! Finding the `registry-svc` and `star-node` binaries `loadtest local` starts.
//!
//! They are looked for next to the loadtest executable (`target/release/` when run with
//! `cargo run --release -p loadtest`), or in `--bin-dir`. `cargo run -p loadtest` builds
//! only loadtest, so when loadtest still sits in the workspace it was built from and
//! `cargo` is on PATH, it first runs `cargo build` for the two binaries with its own
//! profile and target directory. That is a no-op when they are fresh, keeps them from
//! being stale, and makes the README's first command work on a fresh checkout.
//! `--no-build` skips it; elsewhere (an installed loadtest) the binaries must be there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::process::{is_executable, on_path};

/// The workspace loadtest was built from.
const WORKSPACE_MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");

/// The binaries `loadtest local` starts.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `registry-svc`.
    pub registry_svc: PathBuf,
    /// `star-node`.
    pub star_node: PathBuf,
}

/// The loadtest executable itself (the baselines start it as `relay-node`/`echo-node`).
pub fn loadtest_exe() -> Result<PathBuf> {
    std::env::current_exe()
        .map_err(|e| Error::Missing(format!("cannot find my own executable: {e}")))
}

/// Finds (and, see the module docs, first builds) registry-svc and star-node.
pub fn locate(bin_dir: Option<&Path>, build: bool) -> Result<Binaries> {
    let exe = loadtest_exe()?;
    let own_dir = exe
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::Missing(format!("{} has no directory", exe.display())))?;
    let dir = bin_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| own_dir.clone());
    let manifest = Path::new(WORKSPACE_MANIFEST);
    if build
        && bin_dir.is_none()
        && manifest.is_file()
        && let Some(cargo) = cargo()
    {
        build_binaries(&cargo, manifest, &own_dir)?;
    }
    let find = |name: &str| -> Result<PathBuf> {
        let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        if is_executable(&path) {
            Ok(path)
        } else {
            Err(Error::Missing(format!(
                "cannot find {name} in {}: build the workspace first with \
                 `cargo build --release --workspace` (or pass --bin-dir DIR)",
                dir.display()
            )))
        }
    };
    Ok(Binaries {
        registry_svc: find("registry-svc")?,
        star_node: find("star-node")?,
    })
}

/// `cargo`, from `$CARGO` (set when cargo runs us) or PATH.
fn cargo() -> Option<PathBuf> {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .filter(|p| is_executable(p))
        .or_else(|| on_path("cargo"))
}

/// Whether `key` is one of the variables cargo sets for the crate it runs (`cargo run`,
/// `cargo test`: `CARGO_PKG_NAME=loadtest`, `CARGO_MANIFEST_DIR`, …). They must not
/// reach the nested build: build scripts that watch them (ring's does, for
/// `CARGO_PKG_*` and `CARGO_MANIFEST_*`) would see other values than in a build from
/// the shell and rerun, rebuilding ring, snow, hyperverse-core and everything above
/// them on every run, and again in the next build from the shell.
fn is_running_crate_var(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_MANIFEST_")
        || matches!(
            key,
            "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
        )
}

/// `cargo build -p registry-svc -p star-node` with the profile and target directory
/// `own_dir` (`…/target/release`) belongs to.
fn build_binaries(cargo: &Path, manifest: &Path, own_dir: &Path) -> Result<()> {
    let profile = own_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("release")
        .to_string();
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(manifest)
        .args(["-p", "registry-svc", "-p", "star-node"]);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    // A target directory holds CACHEDIR.TAG; when loadtest sits in one, build into it.
    if let Some(target) = own_dir.parent()
        && target.join("CACHEDIR.TAG").is_file()
    {
        command.arg("--target-dir").arg(target);
    }
    let shown = format!(
        "cargo build{} -p registry-svc -p star-node",
        match profile.as_str() {
            "debug" => String::new(),
            "release" => " --release".into(),
            other => format!(" --profile {other}"),
        }
    );
    for (key, _) in std::env::vars_os() {
        if is_running_crate_var(&key.to_string_lossy()) {
            command.env_remove(key);
        }
    }
    eprintln!("loadtest: building registry-svc and star-node ({shown}; --no-build skips this)");
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| Error::Missing(format!("cannot run {}: {e}", cargo.display())))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Missing(format!(
            "`{shown}` failed ({status}); fix the build, or build the workspace yourself with \
             `cargo build --release --workspace` and pass --no-build"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nested_build_does_not_inherit_the_running_crates_variables() {
        for key in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_LINKS",
            "CARGO_CRATE_NAME",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            assert!(is_running_crate_var(key), "{key}");
        }
        for key in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_INCREMENTAL",
            "CARGO_PROFILE_RELEASE_DEBUG",
            "PATH",
        ] {
            assert!(!is_running_crate_var(key), "{key}");
        }
    }
}
