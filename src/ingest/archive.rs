//! The X data archive's `data/following.js`: `window.YTD.following.part0 = [ {"following":
//! {"accountId": "…", "userLink": "…"}} … ]`. It holds ids only; `userLink` is optional.

use std::io::Read;

use super::target::parse_user_id;
use super::{Accounts, IngestError, Item, Reject, Sink, emit};
use crate::store::{INSERT_BATCH, NewJob, TargetKind};

/// Archives hold at most a few tens of thousands of follows; more than this is not an archive.
const MAX_ARCHIVE: u64 = 256 << 20;

pub(super) fn read(
    input: Box<dyn Read + Send>,
    file: &str,
    accounts: &Accounts,
    sink: &Sink,
) -> Result<(), IngestError> {
    let format = |message: String| IngestError::Format { file: file.to_string(), message };
    let mut text = String::new();
    input.take(MAX_ARCHIVE).read_to_string(&mut text).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => format("not valid UTF-8, so not an X archive file".into()),
        _ => IngestError::Io { file: file.to_string(), source: e },
    })?;
    let text = text.trim_start_matches('\u{feff}');
    let body = match text.trim_start().strip_prefix("window.YTD.") {
        Some(rest) => {
            rest.split_once('=').map(|(_, json)| json).ok_or_else(|| format("no '=' after window.YTD…".into()))?
        }
        None => {
            return Err(format(
                "not an X archive file: expected it to start with 'window.YTD.following.part0 = ['".into(),
            ));
        }
    };
    let entries: Vec<serde_json::Value> = serde_json::from_str(body.trim().trim_end_matches(';'))
        .map_err(|e| format(format!("line {}: not a JSON array ({e}); is the file truncated?", e.line())))?;
    let Some(account_id) = accounts.resolve(None).ok() else {
        return Err(format("an archive has no account column: pass --account NAME".into()));
    };
    let mut batch = Vec::with_capacity(INSERT_BATCH.min(entries.len()));
    for (i, entry) in entries.iter().enumerate() {
        let id = entry.get("following").and_then(|f| f.get("accountId")).and_then(|v| v.as_str());
        let result = match id {
            Some(id) => parse_user_id(id).map(|n| n.to_string()),
            None => Err("entry has no following.accountId".to_string()),
        };
        match result {
            Ok(target) => batch.push(NewJob { account_id, kind: TargetKind::UserId, target, notify: false }),
            Err(reason) => {
                if !batch.is_empty() {
                    let n = batch.len() as u64;
                    emit(sink, Item::Jobs(std::mem::take(&mut batch), n));
                }
                emit(
                    sink,
                    Item::Reject(Reject {
                        file: file.to_string(),
                        line: i as u64 + 1,
                        reason: format!("entry {}: {reason}", i + 1),
                    }),
                );
            }
        }
        if batch.len() == INSERT_BATCH {
            let n = batch.len() as u64;
            emit(sink, Item::Jobs(std::mem::take(&mut batch), n));
        }
    }
    if !batch.is_empty() {
        let n = batch.len() as u64;
        emit(sink, Item::Jobs(batch, n));
    }
    Ok(())
}
