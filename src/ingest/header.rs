//! A CSV file's header: which of its columns name the account, the target (by screen name, id or
//! any form), and the follow flag — by name, in the many spellings people write them — and
//! which it ignores.

use super::target::{self, Hint};

/// The columns followq understands.
#[derive(Debug, Default, Clone)]
pub(super) struct Columns {
    pub(super) account: Option<usize>,
    pub(super) screen_name: Option<usize>,
    pub(super) user_id: Option<usize>,
    /// `target` / `url` / `profile` / `link`: any form, read as a headerless value is.
    pub(super) any: Option<usize>,
    pub(super) follow: Option<usize>,
    /// The columns followq does not read (a few names and a count), if any.
    pub(super) ignored: Option<String>,
    /// A bare `ID` column stands beside a screen-name column (warned about: see `header`).
    pub(super) id_beside_name: bool,
}

impl Columns {
    /// True when followq reads field `i`.
    pub(super) fn reads(&self, i: usize) -> bool {
        [self.account, self.screen_name, self.user_id, self.any, self.follow].contains(&Some(i))
    }
}

/// Column names in messages: at most this many, then a count.
const NAMED_COLUMNS: usize = 5;

/// What a header cell names, however a person wrote it: `Screen Name`, `Twitter Handle`,
/// `X handle`, `user-id`, `Profile URL` — case, spaces, `-` and `_` do not matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Account,
    ScreenName,
    UserId,
    Any,
    Follow,
}

fn column_name(cell: &str) -> Option<Column> {
    let key = header_key(cell);
    // Plurals too: `Handles`, `Usernames`, `IDs`.
    column_key(&key).or_else(|| key.strip_suffix('s').and_then(column_key))
}

/// A header cell as compared: letters and digits only, lower case.
fn header_key(cell: &str) -> String {
    cell.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

fn column_key(key: &str) -> Option<Column> {
    Some(match key {
        "account" | "fromaccount" | "followfrom" => Column::Account,
        "screenname" | "username" | "handle" | "twitterhandle" | "xhandle" | "twitterusername" | "xusername"
        | "twitterscreenname" | "twittername" | "twitter" | "twitteraccount" | "xaccount" => Column::ScreenName,
        "userid" | "id" | "idstr" | "twitterid" | "xid" | "twitteruserid" | "xuserid" => Column::UserId,
        "target" | "url" | "profile" | "link" | "profileurl" | "profilelink" | "twitterurl" | "xurl" => Column::Any,
        "follow" | "notify" | "notifications" => Column::Follow,
        _ => return None,
    })
}

/// A lone first cell that is surely a header, not a target: not a valid target, and text with
/// a letter in it (`Twitter Handles`, `E-mail`, `Name (optional)`).
pub(super) fn looks_like_header(cell: &str) -> bool {
    // Words a person heads a list with that are also valid screen names.
    const HEADERISH: &[&str] =
        &["name", "names", "fullname", "user", "users", "people", "contacts", "list", "follows", "following", "email"];
    let key = header_key(cell);
    HEADERISH.contains(&key.as_str())
        || cell.chars().any(char::is_alphabetic) && target::parse(cell, Hint::Any).is_err() && !cell.contains('/')
}

/// A few names and how many more, for messages about many columns.
fn some_of(names: &[String], total: usize) -> String {
    let shown: Vec<String> = names.iter().take(NAMED_COLUMNS).map(|n| format!("'{}'", target::shorten(n))).collect();
    match total.saturating_sub(shown.len()) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// The header's columns, or `None` when the first row is data (no recognised column name).
pub(super) fn header(record: &csv::ByteRecord) -> Result<Option<Columns>, String> {
    let mut c = Columns::default();
    let mut known = 0;
    let (mut unknown, mut unknown_total) = (Vec::new(), 0);
    for (i, raw) in record.iter().enumerate() {
        let cell = String::from_utf8_lossy(raw);
        let cell = cell.trim();
        let slot = match column_name(cell) {
            Some(Column::Account) => &mut c.account,
            Some(Column::ScreenName) => &mut c.screen_name,
            Some(Column::UserId) => &mut c.user_id,
            Some(Column::Any) => &mut c.any,
            Some(Column::Follow) => &mut c.follow,
            None => {
                unknown_total += 1;
                if unknown.len() < NAMED_COLUMNS {
                    unknown.push(cell.to_string());
                }
                continue;
            }
        };
        if slot.is_some() {
            return Err(format!(
                "line 1: column '{}' repeats a column already given (screen_name/username/handle and user_id/id are one column each)",
                target::shorten(cell)
            ));
        }
        *slot = Some(i);
        known += 1;
    }
    if known == 0 {
        if record.len() > 1 {
            return Err(format!(
                "line 1: no recognised column among {}; expected a header naming screen_name/username/handle, user_id/id or target/url (and optionally account, follow), or a single column of targets",
                some_of(&unknown, unknown_total)
            ));
        }
        return Ok(None);
    }
    let targets = [c.screen_name, c.user_id, c.any].iter().filter(|c| c.is_some()).count();
    if targets == 0 {
        return Err(
            "line 1: the header names no target column (screen_name/username/handle, user_id/id, or target/url)".into(),
        );
    }
    if c.any.is_some() && targets > 1 {
        return Err("line 1: a target/url column cannot stand beside screen_name or user_id columns".into());
    }
    c.ignored = (unknown_total > 0).then(|| some_of(&unknown, unknown_total));
    // `ID` beside a handle column is often a row number, and the id wins where both are filled.
    if let (Some(id), Some(_)) = (c.user_id, c.screen_name)
        && header_key(&String::from_utf8_lossy(&record[id])) == "id"
    {
        c.id_beside_name = true;
    }
    Ok(Some(c))
}
