//! Where the database is: a SQLite file (the default), or a PostgreSQL URL that several hosts
//! share. The URL may carry a password; it is shown with the password hidden, always.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where the store is (`--db`, `FOLLOWQ_DB`).
#[derive(Clone, PartialEq, Eq)]
pub enum Db {
    /// A SQLite file.
    File(PathBuf),
    /// A PostgreSQL database, `postgres://…` or `postgresql://…`.
    Postgres(PgUrl),
}

/// A PostgreSQL URL: used whole to connect, shown with its password hidden.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    /// The URL to connect with (the password in it).
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                // A password can also ride in the query (`?password=…`).
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let hidden = k.eq_ignore_ascii_case("password");
                        (k.into_owned(), if hidden { "***".to_string() } else { v.into_owned() })
                    })
                    .collect();
                if !pairs.is_empty() {
                    u.query_pairs_mut().clear().extend_pairs(pairs);
                }
                write!(f, "{u}")
            }
            // Not a URL sqlx can use either: say only what kind it was.
            Err(_) => f.write_str("postgres://(unreadable URL)"),
        }
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({self})")
    }
}

impl Db {
    /// `--db`'s value: a URL with a PostgreSQL scheme, else a file path.
    pub fn parse(value: &Path) -> Db {
        let text = value.to_string_lossy();
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Db::Postgres(PgUrl(text.into_owned()))
        } else {
            Db::File(value.to_path_buf())
        }
    }

    /// The SQLite file, if it is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Db::File(p) => Some(p),
            Db::Postgres(_) => None,
        }
    }

    /// True unless it is a SQLite file that is not there (a server is asked when opened).
    pub fn exists(&self) -> bool {
        match self {
            Db::File(p) => p.exists(),
            Db::Postgres(_) => true,
        }
    }
}

impl fmt::Display for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Db::File(p) => write!(f, "{}", p.display()),
            Db::Postgres(u) => write!(f, "{u}"),
        }
    }
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Db({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_is_shown_without_its_password_wherever_it_rides() {
        let db = Db::parse(Path::new("postgres://ops:s3cret-pw@db.example:5432/followq?sslmode=require&password=q2x"));
        let shown = format!("{db} {db:?}");
        assert!(!shown.contains("s3cret-pw") && !shown.contains("q2x"), "{shown}");
        assert!(shown.contains("ops:***@db.example:5432/followq") && shown.contains("sslmode=require"), "{shown}");
        let Db::Postgres(url) = &db else { panic!("{db:?}") };
        assert!(url.secret().contains("s3cret-pw"));
        assert_eq!(Db::parse(Path::new("PostgreSQL://h/d")).file(), None);
        assert_eq!(Db::parse(Path::new("followq.db")).file(), Some(Path::new("followq.db")));
        assert_eq!(Db::parse(Path::new("./postgres://x")).file(), Some(Path::new("./postgres://x")));
    }
}
