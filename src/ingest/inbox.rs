//! The spool folder `jobs/inbox/`: every file in it is ingested once, by content hash, so a file
//! renamed, copied or dropped in twice adds nothing, and an import cut short is simply redone.

use std::path::{Path, PathBuf};

use super::{IngestError, hash_file};
use crate::store::Store;

/// Files in the inbox whose content was not imported yet, with their hashes, oldest name first.
pub async fn pending(store: &Store, dir: &Path) -> Result<Vec<(PathBuf, String)>, IngestError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IngestError::Io { file: dir.display().to_string(), source: e }),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        // Hidden files, editor swap files and partial copies (.tmp / .part) are not ready.
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && !name.ends_with(".tmp") && !name.ends_with(".part") && !name.ends_with('~')
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let hash = hash_file(&path)?;
        if !store.content_imported(&hash).await? {
            out.push((path, hash));
        }
    }
    Ok(out)
}
