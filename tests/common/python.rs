//! The Python interpreter of the tests that drive LiveKit's Python packages (tests/python/): env
//! `PARLOR_TEST_PYTHON`, else the venv that .ci/run step 2 makes at
//! `${PARLOR_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/parlor}/test-venv` from
//! tests/python/requirements.txt. Missing: a loud SKIP outside CI, a failure in CI.

use std::path::{Path, PathBuf};

/// The interpreter, if it can `import {modules}` (e.g. `"livekit.rtc, numpy"`); `what` names the
/// test in the SKIP line.
pub fn test_python(modules: &str, what: &str) -> Option<PathBuf> {
    let py = match std::env::var_os("PARLOR_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("PARLOR_HOME")
                .map(PathBuf::from)
                .or_else(|| {
                    let data = std::env::var_os("XDG_DATA_HOME")
                        .map(PathBuf::from)
                        .or_else(|| {
                            std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share"))
                        })?;
                    Some(data.join("parlor"))
                });
            home.unwrap_or_default().join("test-venv/bin/python")
        }
    };
    let ok = std::process::Command::new(&py)
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    match ok {
        true => Some(py),
        false if std::env::var_os("CI").is_some() => panic!(
            "{what} needs {} with {modules} (.ci/run step 2 installs \
             tests/python/requirements.txt there; or set PARLOR_TEST_PYTHON)",
            py.display()
        ),
        false => {
            eprintln!(
                "SKIP {what}: {} cannot import {modules} (pip install -r \
                 tests/python/requirements.txt into a venv there, or set PARLOR_TEST_PYTHON)",
                py.display()
            );
            None
        }
    }
}
