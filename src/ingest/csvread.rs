//! The CSV reader: header or headerless, `,` `;` or tab, a UTF-8 BOM, CRLF, quoted fields.

use std::io::{BufRead, BufReader, Read};

use super::target::{self, Hint};
use super::{Accounts, IngestError, Item, Reject, Sink, emit};
use crate::store::{INSERT_BATCH, NewJob};

/// The columns followq understands.
#[derive(Debug, Default, Clone, Copy)]
struct Columns {
    account: Option<usize>,
    screen_name: Option<usize>,
    user_id: Option<usize>,
    /// `target` / `url` / `profile` / `link`: any form, read as a headerless value is.
    any: Option<usize>,
    follow: Option<usize>,
}

/// Reads the whole input, sending batches and rejects to `sink`.
pub(super) fn read(
    input: Box<dyn Read + Send>,
    file: &str,
    accounts: &Accounts,
    sink: &Sink,
) -> Result<(), IngestError> {
    let mut buf = BufReader::with_capacity(1 << 16, input);
    let io_err = |e: std::io::Error| IngestError::Io { file: file.to_string(), source: e };
    // Peek at the start: skip a BOM, sniff the delimiter from the first line.
    let head = buf.fill_buf().map_err(io_err)?;
    let bom = head.starts_with(b"\xEF\xBB\xBF");
    let delimiter = sniff_delimiter(if bom { &head[3..] } else { head });
    if bom {
        buf.consume(3);
    }
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).delimiter(delimiter).from_reader(buf);

    let mut record = csv::ByteRecord::new();
    let mut cols: Option<Columns> = None;
    let mut first = true;
    let mut batch = Vec::with_capacity(INSERT_BATCH);
    let mut batch_rows = 0u64;
    loop {
        let line = rdr.position().line();
        match rdr.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                // An unterminated quote or an I/O error ends the file; what came before stays.
                let line = e.position().map(|p| p.line()).unwrap_or(line);
                let reason = match e.kind() {
                    csv::ErrorKind::Io(io) => format!("read error: {io}"),
                    _ => format!("malformed CSV: {e}"),
                };
                flush(sink, &mut batch, &mut batch_rows);
                emit(sink, Item::Reject(Reject { file: file.to_string(), line, reason }));
                return Ok(());
            }
        }
        let line = record.position().map(|p| p.line()).unwrap_or(line);
        if first {
            first = false;
            if let Some(c) = header(&record, file)? {
                if c.account.is_none() && !accounts.has_default() {
                    return Err(IngestError::Format {
                        file: file.to_string(),
                        message: "no 'account' column and no default account: pass --account NAME".into(),
                    });
                }
                cols = Some(c);
                continue;
            }
            if !accounts.has_default() {
                return Err(IngestError::Format {
                    file: file.to_string(),
                    message: "a headerless file needs an account: pass --account NAME".into(),
                });
            }
        }
        if record.iter().all(|f| f.iter().all(|b| b.is_ascii_whitespace())) {
            continue; // blank line
        }
        // A quote left open swallows the lines after it into one field: say so, not "bad name".
        if record.iter().any(|f| f.contains(&b'\n')) {
            let spanned: u64 = record
                .iter()
                .map(|f| f.iter().filter(|&&b| b == b'\n').count() as u64 - u64::from(f.ends_with(b"\n")))
                .sum();
            let end = line + spanned;
            flush(sink, &mut batch, &mut batch_rows);
            let reason = format!("a quoted field runs from line {line} to line {end}: an unterminated quote?");
            if !emit(sink, Item::Reject(Reject { file: file.to_string(), line, reason })) {
                return Ok(());
            }
            continue;
        }
        match row(&record, cols.as_ref(), accounts) {
            Ok(job) => {
                batch.push(job);
                batch_rows += 1;
                if batch.len() == INSERT_BATCH {
                    flush(sink, &mut batch, &mut batch_rows);
                }
            }
            Err(reason) => {
                flush(sink, &mut batch, &mut batch_rows);
                if !emit(sink, Item::Reject(Reject { file: file.to_string(), line, reason })) {
                    return Ok(());
                }
            }
        }
    }
    flush(sink, &mut batch, &mut batch_rows);
    Ok(())
}

fn flush(sink: &Sink, batch: &mut Vec<NewJob>, rows: &mut u64) {
    if !batch.is_empty() {
        emit(sink, Item::Jobs(std::mem::replace(batch, Vec::with_capacity(INSERT_BATCH)), *rows));
        *rows = 0;
    }
}

/// The delimiter among `,` `;` tab that occurs most in the first line, outside quotes.
fn sniff_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(head);
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in line {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let best = (0..3).max_by_key(|&i| (counts[i], std::cmp::Reverse(i))).unwrap_or(0);
    if counts[best] == 0 { b',' } else { [b',', b';', b'\t'][best] }
}

/// The header's columns, or `None` when the first row is data (no recognised column name).
fn header(record: &csv::ByteRecord, file: &str) -> Result<Option<Columns>, IngestError> {
    let mut c = Columns::default();
    let mut known = 0;
    let mut unknown = Vec::new();
    for (i, raw) in record.iter().enumerate() {
        let name = String::from_utf8_lossy(raw).trim().to_ascii_lowercase();
        let slot = match name.as_str() {
            "account" => &mut c.account,
            "screen_name" | "username" | "handle" => &mut c.screen_name,
            "user_id" | "id" => &mut c.user_id,
            "target" | "url" | "profile" | "link" => &mut c.any,
            "follow" => &mut c.follow,
            _ => {
                unknown.push(name);
                continue;
            }
        };
        if slot.is_some() {
            return Err(IngestError::Format {
                file: file.to_string(),
                message: format!(
                    "line 1: column '{name}' repeats a column already given (screen_name/username/handle and user_id/id are one column each)"
                ),
            });
        }
        *slot = Some(i);
        known += 1;
    }
    if known == 0 {
        if record.len() > 1 {
            return Err(IngestError::Format {
                file: file.to_string(),
                message: format!(
                    "line 1: no recognised column among {:?}; expected a header naming screen_name/username/handle, user_id/id or target/url (and optionally account, follow), or a single column of targets",
                    unknown
                ),
            });
        }
        return Ok(None);
    }
    let targets = [c.screen_name, c.user_id, c.any].iter().filter(|c| c.is_some()).count();
    if targets == 0 {
        return Err(IngestError::Format {
            file: file.to_string(),
            message:
                "line 1: the header names no target column (screen_name/username/handle, user_id/id, or target/url)"
                    .into(),
        });
    }
    if c.any.is_some() && targets > 1 {
        return Err(IngestError::Format {
            file: file.to_string(),
            message: "line 1: a target/url column cannot stand beside screen_name or user_id columns".into(),
        });
    }
    if !unknown.is_empty() {
        tracing::warn!(file, columns = ?unknown, "ignoring columns followq does not use");
    }
    Ok(Some(c))
}

fn field<'r>(record: &'r csv::ByteRecord, idx: Option<usize>, what: &str) -> Result<Option<&'r str>, String> {
    let Some(i) = idx else { return Ok(None) };
    match record.get(i) {
        None => Ok(None),
        Some(b) => std::str::from_utf8(b).map(|s| Some(s.trim())).map_err(|_| format!("{what}: not valid UTF-8")),
    }
}

/// One data row → a job, or the reason it is rejected.
fn row(record: &csv::ByteRecord, cols: Option<&Columns>, accounts: &Accounts) -> Result<NewJob, String> {
    let Some(c) = cols else {
        if record.len() > 1 {
            return Err(format!("{} columns in a one-column file", record.len()));
        }
        let v = field(record, Some(0), "target")?.unwrap_or("");
        let (kind, target) = target::parse(v, Hint::Any)?;
        return Ok(NewJob { account_id: accounts.resolve(None)?, kind, target, notify: false });
    };
    let account = accounts.resolve(field(record, c.account, "account")?)?;
    let user_id = field(record, c.user_id, "user_id")?.filter(|s| !s.is_empty());
    let name = field(record, c.screen_name, "screen_name")?.filter(|s| !s.is_empty());
    // Both given: the id wins (screen names change, ids do not); a bad id is still an error.
    let any = field(record, c.any, "target")?.filter(|s| !s.is_empty());
    let (kind, target) = match (user_id, name, any) {
        (Some(id), _, _) => target::parse(id, Hint::UserId)?,
        (None, Some(n), _) => target::parse(n, Hint::ScreenName)?,
        (None, None, Some(v)) => target::parse(v, Hint::Any)?,
        (None, None, None) if c.any.is_some() => return Err("no target: the target column is empty".into()),
        (None, None, None) => return Err("no target: screen_name and user_id are both empty".into()),
    };
    let notify = match field(record, c.follow, "follow")?.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("false") | Some("0") | Some("no") => false,
        Some("true") | Some("1") | Some("yes") => true,
        Some(other) => return Err(format!("follow '{}' is not true or false", target::shorten(other))),
    };
    Ok(NewJob { account_id: account, kind, target, notify })
}
