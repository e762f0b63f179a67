//! Deleting a recording, crash-safely: the row is marked `deleting` first (the API treats it as
//! gone), a running recorder is stopped, every file of the recording is removed (the mixed
//! `<id>.webm`, the per-participant `<id>.p<N>.webm`, the `<id>.json` manifest, repair leftovers),
//! then the row goes. At start-up [`finish_pending`] completes deletes a crash interrupted.

use crate::store::{RecordingRecord, Store, StoreError};
use std::path::{Component, Path};
use tracing::{info, warn};

/// A stored relative path, refusing anything that could leave the recordings directory.
pub fn safe_relative(p: &str) -> Option<&Path> {
    let path = Path::new(p);
    (!p.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))).then_some(path)
}

/// Whether `name` (a file name in the recordings directory) belongs to recording `id`.
fn is_recording_file(id: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(id).and_then(|r| r.strip_prefix('.')) else {
        return false;
    };
    let rest = rest.strip_suffix(".repairing").unwrap_or(rest);
    if rest == "webm" || rest == "json" {
        return true;
    }
    rest.strip_prefix('p')
        .and_then(|r| r.strip_suffix(".webm"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Remove every file of recording `r` under `dir`; returns how many were removed. Files already
/// gone are fine; other errors are returned (the delete stays pending and is retried at start-up).
pub fn remove_files(dir: &Path, r: &RecordingRecord) -> std::io::Result<usize> {
    let mut removed = 0;
    let mut remove = |path: &Path| match std::fs::remove_file(path) {
        Ok(()) => {
            removed += 1;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    if let Some(rel) = r.file_path.as_deref().and_then(safe_relative) {
        remove(&dir.join(rel))?;
    }
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries.flatten() {
                let name = e.file_name();
                if name.to_str().is_some_and(|n| is_recording_file(&r.id, n)) {
                    remove(&e.path())?;
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(removed)
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot delete the recording's files: {0}")]
    Files(std::io::Error),
}

/// The files-and-row part of a delete whose row is already marked `deleting`.
pub async fn finish(store: &Store, dir: &Path, r: &RecordingRecord) -> Result<(), DeleteError> {
    let (dir2, r2) = (dir.to_path_buf(), r.clone());
    let removed = tokio::task::spawn_blocking(move || remove_files(&dir2, &r2))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match removed {
        Ok(n) => info!(recording = %r.id, files = n, "recording files deleted"),
        Err(e) => {
            // Keep the row `deleting`: the next start-up tries again.
            warn!(recording = %r.id, error = %e, "cannot delete recording files");
            return Err(DeleteError::Files(e));
        }
    }
    match store.delete_recording(&r.id).await {
        Ok(()) | Err(StoreError::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Finish every delete a crash interrupted (rows left `deleting`). Run at start-up.
pub async fn finish_pending(store: &Store, dir: &Path, node: &str) -> usize {
    let pending = match store.deleting_recordings(node).await {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "listing interrupted recording deletes");
            return 0;
        }
    };
    let mut n = 0;
    for r in pending {
        if finish(store, dir, &r).await.is_ok() {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::is_recording_file;

    #[test]
    fn recording_file_names() {
        for yes in [
            "rec_1.webm",
            "rec_1.json",
            "rec_1.p0.webm",
            "rec_1.p12.webm",
            "rec_1.webm.repairing",
            "rec_1.p3.webm.repairing",
        ] {
            assert!(is_recording_file("rec_1", yes), "{yes}");
        }
        for no in [
            "rec_10.webm",
            "rec_1.px.webm",
            "rec_1.p.webm",
            "rec_1.txt",
            "rec_1webm",
            "rec_2.webm",
            "rec_1.p1.json",
        ] {
            assert!(!is_recording_file("rec_1", no), "{no}");
        }
    }
}
