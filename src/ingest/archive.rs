//! The X data archive's `data/following.js`: `window.YTD.following.part0 = [ {"following":
//! {"accountId": "…", "userLink": "…"}} … ]`. It holds ids only; `userLink` is optional.
//!
//! Read as a stream, one entry at a time: memory stays flat for an archive of any size, and the
//! entries before a truncation or a JSON error still go in.

use std::io::{BufRead, BufReader, Read};

use serde::de::{Deserializer as _, SeqAccess, Visitor};

use super::target::parse_user_id;
use super::{Accounts, IngestError, Item, Reject, Sink, emit};
use crate::model::{NewJob, TargetKind};
use crate::store::INSERT_BATCH;

/// The longest `window.YTD.following.part0 =` prefix worth reading before the JSON.
const MAX_PREFIX: u64 = 256;

pub(super) fn read(
    input: Box<dyn Read + Send>,
    file: &str,
    accounts: &Accounts,
    sink: &Sink,
) -> Result<(), IngestError> {
    let format = |message: String| IngestError::Format { file: file.to_string(), message };
    let mut buf = BufReader::with_capacity(1 << 16, input);
    let mut prefix = Vec::new();
    (&mut buf)
        .take(MAX_PREFIX)
        .read_until(b'=', &mut prefix)
        .map_err(|e| IngestError::Io { file: file.to_string(), source: e })?;
    let text = String::from_utf8_lossy(&prefix);
    let text = text.trim_start_matches('\u{feff}').trim_start();
    if !text.starts_with("window.YTD.") {
        return Err(format("not an X archive file: expected it to start with 'window.YTD.following.part0 = ['".into()));
    }
    if !text.ends_with('=') {
        return Err(format("no '=' after window.YTD…".into()));
    }
    let Some(account_id) = accounts.resolve(None).ok() else {
        return Err(IngestError::NeedsAccount {
            file: file.to_string(),
            message: "an archive has no account column: pass --account NAME".into(),
        });
    };
    // serde_json counts lines from where it starts reading: add the prefix's own.
    let prefix_lines = prefix.iter().filter(|&&b| b == b'\n').count();
    let mut entries = Entries { file, account_id, sink, batch: Vec::with_capacity(INSERT_BATCH), read: 0 };
    let result = serde_json::Deserializer::from_reader(buf).deserialize_seq(&mut entries);
    entries.flush();
    result.map_err(|e| {
        format(format!("line {}: not a JSON array ({e}); is the file truncated?", e.line() + prefix_lines))
    })
}

/// The entries as they are read: each one queued or rejected, in batches.
struct Entries<'a> {
    file: &'a str,
    account_id: i64,
    sink: &'a Sink,
    batch: Vec<NewJob>,
    /// Entries read so far.
    read: u64,
}

impl Entries<'_> {
    fn flush(&mut self) {
        if !self.batch.is_empty() {
            let n = self.batch.len() as u64;
            emit(self.sink, Item::Jobs(std::mem::replace(&mut self.batch, Vec::with_capacity(INSERT_BATCH)), n));
        }
    }

    fn entry(&mut self, entry: serde_json::Value) {
        self.read += 1;
        let id = entry.get("following").and_then(|f| f.get("accountId")).and_then(|v| v.as_str());
        let result = match id {
            Some(id) => parse_user_id(id).map(|n| n.to_string()),
            None => Err("entry has no following.accountId".to_string()),
        };
        match result {
            Ok(target) => {
                self.batch.push(NewJob {
                    account_id: self.account_id,
                    kind: TargetKind::UserId,
                    target,
                    notify: false,
                });
                if self.batch.len() == INSERT_BATCH {
                    self.flush();
                }
            }
            Err(reason) => {
                self.flush();
                let n = self.read;
                emit(self.sink, Item::Reject(Reject::new(self.file, n, format!("entry {n}: {reason}"))));
            }
        }
    }
}

impl<'de> Visitor<'de> for &mut Entries<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of following entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(entry) = seq.next_element::<serde_json::Value>()? {
            self.entry(entry);
        }
        Ok(())
    }
}
