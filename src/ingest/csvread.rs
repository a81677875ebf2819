//! The CSV reader: header or headerless, `,` `;` or tab, UTF-8 (with or without a BOM) or
//! UTF-16 with a BOM, any line ends (LF, CRLF, CR), quoted fields, line breaks inside quotes.
//!
//! Line numbers are the file's own: [`Lines`] counts every line end as the bytes stream past, and
//! a record's line is the one its first byte stands on — whatever the line ends, blank lines or
//! quoted line breaks before it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::rc::Rc;

use super::header::{Columns, header, looks_like_header};
use super::target::{self, Hint};
use super::{Accounts, IngestError, Item, Reject, RejectedRow, Sink, emit};
use crate::model::NewJob;
use crate::store::INSERT_BATCH;

/// Reads the whole input, sending batches and rejects to `sink`.
pub(super) fn read(
    input: Box<dyn Read + Send>,
    file: &str,
    accounts: &Accounts,
    sink: &Sink,
) -> Result<(), IngestError> {
    let io_err = |e: std::io::Error| IngestError::Io { file: file.to_string(), source: e };
    let mut raw = BufReader::with_capacity(1 << 16, input);
    if let Some(what) = not_text(raw.fill_buf().map_err(io_err)?) {
        return Err(IngestError::Format { file: file.to_string(), message: what.into() });
    }
    // UTF-16 (with its BOM) becomes UTF-8; a UTF-8 BOM goes; anything else passes as it is, so
    // a field that is not UTF-8 is still one row's problem, not the file's.
    let mut decoded = encoding_rs_io::DecodeReaderBytesBuilder::new().strip_bom(true).utf8_passthru(true).build(raw);
    // The first line (or 64 KiB of it) decides the delimiter; it is read again as the stream's start.
    let mut head = Vec::new();
    let mut chunk = [0u8; 8192];
    while head.len() < 1 << 16 && !head.iter().any(|&b| b == b'\n' || b == b'\r') {
        let n = decoded.read(&mut chunk).map_err(io_err)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let delimiter = sniff_delimiter(&head);
    let lines = Rc::new(RefCell::new(Lines::default()));
    let stream = std::io::Cursor::new(head).chain(decoded);
    let batch = Rc::new(RefCell::new(Batch::default()));
    let counting =
        Counting { inner: stream, lines: lines.clone(), batch: batch.clone(), sink: sink.clone(), short: false };
    let buf = BufReader::with_capacity(1 << 16, counting);
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).delimiter(delimiter).from_reader(buf);
    let mut r = Rows { file, accounts, sink, cols: None, batch };

    let mut record = csv::ByteRecord::new();
    // A record read ahead (to learn whether a quoted line break ran to the end of the input).
    let mut ahead: Option<csv::ByteRecord> = None;
    let mut first = true;
    loop {
        if let Some(next) = ahead.take() {
            record = next;
        } else {
            match rdr.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    // An I/O error ends the file; what came before stays.
                    let line = e.position().map_or(0, |p| lines.borrow_mut().line_at(p.byte()));
                    let reason = match e.kind() {
                        csv::ErrorKind::Io(io) => format!("read error: {io}"),
                        _ => format!("malformed CSV: {e}"),
                    };
                    r.flush();
                    emit(sink, Item::Reject(Reject::new(file, line, reason)));
                    return Ok(());
                }
            }
        }
        let line = record.position().map_or(0, |p| lines.borrow_mut().line_at(p.byte()));
        if first {
            first = false;
            if r.first_row(&record, line)? {
                continue;
            }
        }
        if record.iter().all(|f| f.iter().all(|b| b.is_ascii_whitespace())) {
            continue; // blank line
        }
        let Some(i) = record.iter().position(|f| f.contains(&b'\n') || f.contains(&b'\r')) else {
            if !r.row(&record, line) {
                return Ok(());
            }
            continue;
        };
        // A line break inside quotes. Read ahead: a quote that runs to the end of the input was
        // never closed (its last field, and the input does not end with a quote).
        let mut next = csv::ByteRecord::new();
        let more = matches!(rdr.read_byte_record(&mut next), Ok(true));
        let unclosed = !more && i + 1 == record.len() && lines.borrow().last_byte != b'"';
        if more {
            ahead = Some(next);
        }
        let go_on = if unclosed {
            r.unterminated(&record, i, line, delimiter)
        } else if r.cols.as_ref().is_none_or(|c| c.reads(i)) {
            // A closed quote: never read as rows (the text of a cell is not a list), and a target
            // cannot hold a line break.
            let end = line + line_breaks(&record[i]);
            let reason = format!("a line break inside a quoted cell followq reads (lines {line} to {end})");
            r.reject(Reject { row: Some(RejectedRow::of(&record, r.cols.as_ref())), ..Reject::new(file, line, reason) })
        } else {
            // A value over several lines in a column followq does not read (RFC 4180).
            r.row(&record, line)
        };
        if !go_on {
            return Ok(());
        }
    }
    r.flush();
    Ok(())
}

/// What a file that is not text looks like, from its first bytes (None: it may be CSV).
fn not_text(head: &[u8]) -> Option<&'static str> {
    const KINDS: &[(&[u8], &str)] = &[
        (
            b"PK\x03\x04",
            "this is a zip archive, such as an Excel workbook (.xlsx): save it as CSV (UTF-8) and import that",
        ),
        (b"\xD0\xCF\x11\xE0", "this is an Excel 97-2003 workbook (.xls): save it as CSV (UTF-8) and import that"),
        (b"\x1f\x8b", "this is a gzip-compressed file: decompress it first (gunzip)"),
        (b"%PDF", "this is a PDF document, not a CSV file"),
        (b"\x89PNG", "this is a PNG image, not a CSV file"),
        (b"SQLite format 3\0", "this is an SQLite database, not a CSV file"),
    ];
    if let Some((_, what)) = KINDS.iter().find(|(magic, _)| head.starts_with(magic)) {
        return Some(what);
    }
    let utf16 = head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF");
    // Text has no NUL bytes to speak of; a single one is a bad row, many a binary file.
    let nuls = head.iter().take(8192).filter(|&&b| b == 0).count();
    (!utf16 && nuls > 8).then_some("this looks like a binary file, not CSV text (it is full of NUL bytes)")
}

/// The rows of one file: the header's columns, the batch being filled, and where it goes.
struct Rows<'a> {
    file: &'a str,
    accounts: &'a Accounts,
    sink: &'a Sink,
    cols: Option<Columns>,
    /// Shared with [`Counting`], which sends it on before waiting for a slow input.
    batch: Rc<RefCell<Batch>>,
}

/// Jobs not sent to the importer yet, and the rows they came from.
#[derive(Default)]
struct Batch {
    jobs: Vec<NewJob>,
    rows: u64,
}

impl Batch {
    fn flush(&mut self, sink: &Sink) {
        if !self.jobs.is_empty() {
            let jobs = std::mem::replace(&mut self.jobs, Vec::with_capacity(INSERT_BATCH));
            emit(sink, Item::Jobs(jobs, self.rows));
            self.rows = 0;
        }
    }
}

impl Rows<'_> {
    fn flush(&mut self) {
        self.batch.borrow_mut().flush(self.sink);
    }

    /// Sends a reject; false when the importer stopped listening.
    fn reject(&mut self, reject: Reject) -> bool {
        self.flush();
        emit(self.sink, Item::Reject(reject))
    }

    /// The first row: a header (true: it is consumed), or data. A single cell that reads like a
    /// header but names nothing followq knows is reported as that, and the file read as one
    /// column of targets.
    fn first_row(&mut self, record: &csv::ByteRecord, line: u64) -> Result<bool, IngestError> {
        let format = |message: String| IngestError::Format { file: self.file.to_string(), message };
        let needs_account =
            |message: &str| IngestError::NeedsAccount { file: self.file.to_string(), message: message.into() };
        if let Some(c) = header(record).map_err(format)? {
            if c.account.is_none() && !self.accounts.has_default() {
                return Err(needs_account("no 'account' column and no default account: pass --account NAME"));
            }
            if let Some(columns) = &c.ignored {
                tracing::warn!(file = self.file, columns = %columns, "ignoring columns followq does not use");
            }
            if c.id_beside_name {
                tracing::warn!(
                    file = self.file,
                    "the 'ID' column is read as X user ids, and where a row has both an id and a screen name the id wins: if 'ID' numbers the rows, rename or remove it"
                );
            }
            self.cols = Some(c);
            return Ok(true);
        }
        if !self.accounts.has_default() {
            return Err(needs_account("a headerless file needs an account: pass --account NAME"));
        }
        let cell = String::from_utf8_lossy(record.get(0).unwrap_or_default()).trim().to_string();
        if record.len() == 1 && looks_like_header(&cell) {
            let reason = format!(
                "'{}' looks like a header, but names no column followq reads (screen_name, user_id, target, account, follow); the rows after it are read as one column of targets",
                target::shorten(&cell)
            );
            self.reject(Reject { row: Some(RejectedRow::of(record, None)), ..Reject::new(self.file, line, reason) });
            return Ok(true);
        }
        Ok(false)
    }

    /// A data row → a job, or a reject; false when the importer stopped listening.
    fn row(&mut self, record: &csv::ByteRecord, line: u64) -> bool {
        match row(record, self.cols.as_ref(), self.accounts) {
            Ok(job) => {
                let mut batch = self.batch.borrow_mut();
                batch.jobs.push(job);
                batch.rows += 1;
                if batch.jobs.len() == INSERT_BATCH {
                    batch.flush(self.sink);
                }
                true
            }
            Err(reason) => {
                let rejected = RejectedRow::of(record, self.cols.as_ref());
                self.reject(Reject { row: Some(rejected), ..Reject::new(self.file, line, reason) })
            }
        }
    }

    /// A quote opened at `line` in field `i` and never closed: one reject for the region it
    /// swallowed, then each swallowed line read as the row it was. False when the importer
    /// stopped listening.
    fn unterminated(&mut self, record: &csv::ByteRecord, i: usize, line: u64, delimiter: u8) -> bool {
        let field = &record[i];
        let breaks = line_breaks(field.strip_suffix(b"\n").unwrap_or(field));
        let reason = format!(
            "a quote opened here is never closed (it runs to line {}, the end of the file): the lines after this one are read as rows",
            line + breaks
        );
        if !self.reject(Reject {
            row: Some(RejectedRow::of(record, self.cols.as_ref())),
            ..Reject::new(self.file, line, reason)
        }) {
            return false;
        }
        for (k, text) in continuation(field).enumerate() {
            let Some(rec) = parse_line(text, delimiter) else { continue };
            if rec.iter().all(|f| f.iter().all(|b| b.is_ascii_whitespace())) {
                continue;
            }
            if !self.row(&rec, line + 1 + k as u64) {
                return false;
            }
        }
        true
    }
}

/// The lines of a field after its first (CRLF, LF or CR ends).
fn continuation(field: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < field.len() {
        match field[i] {
            b'\r' | b'\n' => {
                lines.push(&field[start..i]);
                if field[i] == b'\r' && field.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < field.len() {
        lines.push(&field[start..]);
    }
    lines.into_iter().skip(1)
}

/// Line ends in `bytes` (CRLF counted once).
fn line_breaks(bytes: &[u8]) -> u64 {
    let mut n = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') || b == b'\r' {
            n += 1;
        }
    }
    n
}

/// One line of text as one CSV record.
fn parse_line(line: &[u8], delimiter: u8) -> Option<csv::ByteRecord> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).delimiter(delimiter).from_reader(line);
    let mut rec = csv::ByteRecord::new();
    rdr.read_byte_record(&mut rec).ok().filter(|&more| more).map(|_| rec)
}

/// The delimiter among `,` `;` tab that occurs most in the first line, outside quotes.
fn sniff_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|&b| b == b'\n' || b == b'\r').next().unwrap_or(head);
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
    let notify =
        match field(record, c.follow, "follow")?.map(|f| target::unneutralise(f).to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("false") | Some("0") | Some("no") => false,
            Some("true") | Some("1") | Some("yes") => true,
            Some(other) => return Err(format!("follow '{}' is not true or false", target::shorten(other))),
        };
    Ok(NewJob { account_id: account, kind, target, notify })
}

impl RejectedRow {
    /// The cells of a rejected row that followq reads, as written, for a rejects file that
    /// `followq import` takes back: the target from whichever column held it (a screen name
    /// marked with `@`, so that digits stay a screen name), the account and the follow flag.
    fn of(record: &csv::ByteRecord, cols: Option<&Columns>) -> RejectedRow {
        let cell = |i: Option<usize>| {
            i.and_then(|i| record.get(i)).map(|b| String::from_utf8_lossy(b).trim().to_string()).unwrap_or_default()
        };
        let Some(c) = cols else {
            let all: Vec<String> = record.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
            return RejectedRow { target: all.join(","), ..RejectedRow::default() };
        };
        let (id, name, any) = (cell(c.user_id), cell(c.screen_name), cell(c.any));
        let target = if !id.is_empty() {
            id
        } else if !name.is_empty() && !name.starts_with('@') && !name.contains('/') {
            format!("@{name}")
        } else if !name.is_empty() {
            name
        } else {
            any
        };
        RejectedRow { account: cell(c.account), target, follow: cell(c.follow) }
    }
}

/// Where each line with something on it begins, for turning a record's byte offset into its
/// line. csv reports a record's offset as the byte after the previous record's first line-end
/// byte, so it may point at the rest of a CRLF or at blank lines: the record's line is that of
/// the first line with content at or after it. Records are asked about in order, so this holds
/// only the lines still in the read-ahead.
#[derive(Debug)]
struct Lines {
    /// (offset of the line's first byte, line number) of lines that have content.
    content: VecDeque<(u64, u64)>,
    /// Bytes seen so far.
    seen: u64,
    /// The line of the next byte.
    line: u64,
    /// The next byte begins a line.
    at_start: bool,
    /// The last byte seen was a CR (a LF right after it ends the same line).
    after_cr: bool,
    /// The last byte seen that is not a line end.
    last_byte: u8,
}

impl Default for Lines {
    fn default() -> Lines {
        Lines { content: VecDeque::new(), seen: 0, line: 1, at_start: true, after_cr: false, last_byte: 0 }
    }
}

impl Lines {
    fn scan(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => {}
                b'\n' | b'\r' => {
                    self.line += 1;
                    self.at_start = true;
                }
                _ if self.at_start => {
                    self.content.push_back((self.seen, self.line));
                    self.at_start = false;
                    self.last_byte = b;
                }
                _ => self.last_byte = b,
            }
            self.after_cr = b == b'\r';
            self.seen += 1;
        }
    }

    /// The line (1-based) of the record csv says begins at `offset`.
    fn line_at(&mut self, offset: u64) -> u64 {
        while self.content.front().is_some_and(|&(at, _)| at < offset) {
            self.content.pop_front();
        }
        self.content.front().map_or(self.line, |&(_, line)| line)
    }
}

/// A reader that tells [`Lines`] about every byte it passes on, and sends the rows read so far
/// to the importer before it waits on a slow input: a pipe or a terminal answers a read with
/// what it has (a short read), a file with all that was asked until its end. So a slow `-`
/// never keeps rows in the reader, where a kill would lose them; a file is not split up more.
struct Counting<R> {
    inner: R,
    lines: Rc<RefCell<Lines>>,
    batch: Rc<RefCell<Batch>>,
    sink: Sink,
    /// The last read was short: the next may wait.
    short: bool,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.short {
            self.batch.borrow_mut().flush(&self.sink);
        }
        let n = self.inner.read(buf)?;
        self.short = n < buf.len();
        self.lines.borrow_mut().scan(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_on_the_line_of_its_first_byte_whatever_the_line_ends() {
        let mut l = Lines::default();
        l.scan(b"a\r\nb\n\nc\rd\r");
        l.scan(b"\ne");
        // csv's offsets: after the first byte of the line end before each record.
        assert_eq!([0, 2, 5, 7, 10].map(|o| l.line_at(o)), [1, 2, 4, 5, 6]);
    }

    #[test]
    fn continuation_lines_are_the_lines_after_the_first() {
        let lines: Vec<&[u8]> = continuation(b"a\r\nb,c\nd").collect();
        assert_eq!(lines, [b"b,c".as_slice(), b"d"]);
        assert_eq!(line_breaks(b"a\r\nb\rc\nd"), 3);
    }
}
