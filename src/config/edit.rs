//! Changes to `followq.toml` and its secrets file that `followq accounts add|remove` make: edited
//! in place with toml_edit, so every comment, blank line and key order the user wrote stays, and
//! written whole or not at all (a temporary file beside it, mode 0600, synced, renamed over it).

use std::path::{Path, PathBuf};

use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, Value};

use super::{ConfigError, TEMPLATE, invalid};

/// The first lines of a secrets file `followq accounts add` creates.
const SECRETS_HEADER: &str = "# followq's account tokens, written by `followq accounts add` and read through the\n\
# `secrets` key of followq.toml. Keep this file mode 0600 and out of version control.\n";

/// A TOML file being edited.
pub struct TomlFile {
    pub path: PathBuf,
    doc: DocumentMut,
    /// False when the file does not exist yet (it is written from a template).
    pub exists: bool,
    /// Its line ends were CRLF, and it began with a byte order mark: it is written back so.
    crlf: bool,
    bom: bool,
}

impl TomlFile {
    /// Reads `path` for editing; a file that does not exist starts as `template`.
    fn open(path: &Path, template: &str) -> Result<TomlFile, ConfigError> {
        let (text, exists) = match std::fs::read_to_string(path) {
            Ok(t) => (t, true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (template.to_string(), false),
            Err(e) => return Err(ConfigError::Read { path: path.to_path_buf(), source: e }),
        };
        let bom = text.starts_with('\u{feff}');
        let crlf = text.contains("\r\n");
        let doc = text.trim_start_matches('\u{feff}').parse::<DocumentMut>().map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: format!("cannot be edited: {}", e.message()),
        })?;
        Ok(TomlFile { path: path.to_path_buf(), doc, exists, crlf, bom })
    }

    /// The file's text as it will be written.
    fn text(&self) -> String {
        let mut text = self.doc.to_string();
        if self.crlf {
            // Every line end as the file had them (the edited lines came out as LF).
            text = text.replace("\r\n", "\n").replace('\n', "\r\n");
        }
        if self.bom {
            text.insert(0, '\u{feff}');
        }
        text
    }

    /// Writes the file: whole or not at all, mode 0600. A symbolic link is followed (the file
    /// it names is replaced, the link kept).
    pub fn save(&self) -> Result<(), ConfigError> {
        write_private(&self.path, &self.text()).map_err(|e| ConfigError::Write { path: self.path.clone(), source: e })
    }

    /// The file as it was read (None: it did not exist), to put back if a change of two files
    /// fails half-way.
    pub fn original(&self) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(&self.path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// `followq.toml`, for adding and removing accounts.
pub struct ConfigFile(pub TomlFile);

impl ConfigFile {
    /// Reads the config for editing (a missing one starts as `followq init`'s template).
    pub fn open(path: &Path) -> Result<ConfigFile, ConfigError> {
        let mut file = TomlFile::open(path, TEMPLATE)?;
        // `accounts = []` is no account yet: a list of tables from now on.
        if file.doc.get("accounts").and_then(Item::as_array).is_some_and(toml_edit::Array::is_empty) {
            file.doc.insert("accounts", Item::ArrayOfTables(ArrayOfTables::new()));
        }
        if let Some(item) = file.doc.get("accounts")
            && !item.is_array_of_tables()
        {
            return Err(invalid("accounts", "must be a list of [[accounts]] tables to be edited"));
        }
        Ok(ConfigFile(file))
    }

    fn accounts(&self) -> Option<&ArrayOfTables> {
        self.0.doc.get("accounts").and_then(Item::as_array_of_tables)
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.accounts()?.iter().position(|t| t.get("name").and_then(Item::as_str) == Some(name))
    }

    /// True when an `[[accounts]]` entry has this name.
    pub fn has_account(&self, name: &str) -> bool {
        self.index_of(name).is_some()
    }

    /// Names the secrets file, as written (a path relative to the config's folder, or absolute):
    /// after the comments that open the file, before its first section.
    pub fn set_secrets_path(&mut self, written: &str) {
        let doc = &mut self.0.doc;
        let fresh = !doc.contains_key("secrets");
        set_string(doc.as_table_mut(), "secrets", written);
        if !fresh {
            return;
        }
        // The opening comments are the first section's preface: they go before the key.
        let first = doc.as_table().iter().filter_map(|(k, i)| i.as_table().map(|t| (k.to_string(), t.position())));
        let Some(first) = first.filter(|(_, p)| p.is_some()).min_by_key(|(_, p)| *p).map(|(k, _)| k) else { return };
        let preface = doc[&first].as_table().and_then(|t| t.decor().prefix()).and_then(|p| p.as_str()).unwrap_or("");
        let preface = preface.to_string();
        if preface.trim().is_empty() {
            return;
        }
        if let Some(mut key) = doc.as_table_mut().key_mut("secrets") {
            key.leaf_decor_mut().set_prefix(preface);
        }
        if let Some(t) = doc[&first].as_table_mut() {
            t.decor_mut().set_prefix("\n");
        }
    }

    /// Sets the account's tokens (None: its tokens live in the secrets file, and any here go),
    /// adding its entry when there is none.
    pub fn set_account(&mut self, name: &str, tokens: Option<(&str, &str)>) {
        let index = self.index_of(name);
        let doc = &mut self.0.doc;
        if !doc.contains_key("accounts") {
            doc.insert("accounts", Item::ArrayOfTables(ArrayOfTables::new()));
        }
        let trailing = doc.trailing().as_str().unwrap_or("").to_string();
        let first = index.is_none() && doc["accounts"].as_array_of_tables().is_some_and(ArrayOfTables::is_empty);
        let Some(list) = doc["accounts"].as_array_of_tables_mut() else { return };
        let table = match index {
            Some(i) => list.get_mut(i).expect("index_of found it"),
            None => {
                let mut t = Table::new();
                t.insert("name", Item::Value(Value::from(name)));
                list.push(t);
                list.get_mut(list.len() - 1).expect("just pushed")
            }
        };
        if index.is_none() {
            // A comment that ends the file (the template's example block) reads as the new
            // entry's preface; else a blank line sets the entry apart.
            let prefix = if first && !trailing.trim().is_empty() { trailing.clone() } else { "\n".to_string() };
            table.decor_mut().set_prefix(prefix);
        }
        match tokens {
            Some((token, secret)) => {
                set_string(table, "token", token);
                set_string(table, "token_secret", secret);
            }
            None => {
                table.remove("token");
                table.remove("token_secret");
            }
        }
        if first && index.is_none() && !trailing.trim().is_empty() {
            doc.set_trailing("");
        }
    }

    /// Removes the account's entry; false when there was none. The template's example block,
    /// which an add made the first entry's preface, stays (before the next entry, or at the end).
    pub fn remove_account(&mut self, name: &str) -> bool {
        let Some(i) = self.index_of(name) else { return false };
        let doc = &mut self.0.doc;
        let Some(list) = doc.get_mut("accounts").and_then(Item::as_array_of_tables_mut) else { return false };
        let removed = list.remove(i);
        let preface = removed.decor().prefix().and_then(|p| p.as_str()).unwrap_or("").to_string();
        if preface.contains("# [[accounts]]") {
            match list.get_mut(i) {
                Some(next) => next.decor_mut().set_prefix(preface),
                None => {
                    let trailing = doc.trailing().as_str().unwrap_or("").to_string();
                    doc.set_trailing(format!("{preface}{trailing}"));
                }
            }
        }
        true
    }
}

/// The secrets file: `[accounts.NAME]` tables of `token` and `token_secret`.
pub struct SecretsFile(pub TomlFile);

impl SecretsFile {
    pub fn open(path: &Path) -> Result<SecretsFile, ConfigError> {
        Ok(SecretsFile(TomlFile::open(path, SECRETS_HEADER)?))
    }

    fn accounts_mut(&mut self) -> &mut Table {
        let doc = &mut self.0.doc;
        if !doc.get("accounts").is_some_and(Item::is_table) {
            let mut t = Table::new();
            t.set_implicit(true);
            doc.insert("accounts", Item::Table(t));
        }
        doc["accounts"].as_table_mut().expect("just made a table")
    }

    /// True when the file holds tokens for this account.
    pub fn has_account(&self, name: &str) -> bool {
        self.0.doc.get("accounts").and_then(|a| a.get(name)).is_some()
    }

    pub fn set_account(&mut self, name: &str, token: &str, secret: &str) {
        // A file that is only its header comment: the header goes before the first table.
        let trailing = self.0.doc.trailing().as_str().unwrap_or("").to_string();
        let accounts = self.accounts_mut();
        if !accounts.contains_key(name) {
            let mut t = Table::new();
            let first = accounts.is_empty() && !trailing.trim().is_empty();
            t.decor_mut().set_prefix(if first { trailing.as_str() } else { "\n" });
            accounts.insert(name, Item::Table(t));
            if first {
                self.0.doc.set_trailing("");
            }
        }
        let accounts = self.accounts_mut();
        if let Some(t) = accounts.get_mut(name).and_then(Item::as_table_mut) {
            set_string(t, "token", token);
            set_string(t, "token_secret", secret);
        }
    }

    /// Removes the account's tokens; false when there were none. The file's header stays.
    pub fn remove_account(&mut self, name: &str) -> bool {
        let Some(removed) = self.accounts_mut().remove(name) else { return false };
        let preface = removed.as_table().and_then(|t| t.decor().prefix()).and_then(|p| p.as_str()).unwrap_or("");
        if preface.contains("followq accounts add") {
            let preface = preface.to_string();
            let kept = match self.accounts_mut().iter_mut().next() {
                Some((_, Item::Table(next))) => {
                    next.decor_mut().set_prefix(preface.clone());
                    true
                }
                _ => false,
            };
            if !kept {
                self.0.doc.set_trailing(preface);
            }
        }
        true
    }
}

/// Where a write of `path` goes: the file it names (through a symbolic link, as for a config
/// kept with other dotfiles), its folder, and the temporary file beside it. One temporary name
/// per file: one a kill left behind is taken over by the next write.
struct Destination {
    target: PathBuf,
    dir: PathBuf,
    tmp: PathBuf,
}

impl Destination {
    fn of(path: &Path) -> Destination {
        let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{file_name}.followq.tmp"));
        Destination { target, dir, tmp }
    }

    /// Opens the temporary file, empty, mode 0600.
    fn open_tmp(&self) -> std::io::Result<std::fs::File> {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        o.open(&self.tmp)
    }
}

/// Whether `path` could be written now: its folder exists and takes a new file (tried with the
/// temporary file [`write_private`] would use). Asked before anything is asked of X.
pub fn writable(path: &Path) -> Result<(), ConfigError> {
    let d = Destination::of(path);
    d.open_tmp().map_err(|e| ConfigError::Write { path: path.to_path_buf(), source: e })?;
    let _ = std::fs::remove_file(&d.tmp);
    Ok(())
}

/// `path` read relative to the folder of `config` (as a `secrets` key means it).
pub fn beside(config: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    config.parent().map_or_else(|| path.to_path_buf(), |dir| dir.join(path))
}

/// Sets a string, keeping the decor (a comment after it) of the value it replaces.
fn set_string(table: &mut Table, key: &str, v: &str) {
    let mut value = Value::from(v);
    if let Some(old) = table.get(key).and_then(Item::as_value) {
        *value.decor_mut() = old.decor().clone();
    }
    table.insert(key, Item::Value(value));
}

/// Writes `text` to `path` whole or not at all, mode 0600: a temporary file beside it, synced,
/// then renamed over it (and the folder synced, so the rename survives a power loss).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let d = Destination::of(path);
    let written = (|| {
        let mut f = d.open_tmp()?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&d.tmp, &d.target)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&d.tmp);
    }
    written?;
    #[cfg(unix)]
    if let Ok(folder) = std::fs::File::open(&d.dir) {
        let _ = folder.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edited(text: &str, f: impl FnOnce(&mut ConfigFile)) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("followq.toml");
        std::fs::write(&path, text).unwrap();
        let mut c = ConfigFile::open(&path).unwrap();
        f(&mut c);
        c.0.save().unwrap();
        std::fs::read_to_string(&path).unwrap()
    }

    #[test]
    fn an_added_account_keeps_every_comment_and_takes_the_template_s_example_as_its_preface() {
        let out = edited(TEMPLATE, |c| c.set_account("alice", Some(("tok-a", "sec-a"))));
        for line in TEMPLATE.lines() {
            assert!(out.contains(line), "lost: {line:?}\n{out}");
        }
        assert!(
            out.ends_with(
                "# token_secret = \"\"\n[[accounts]]\nname = \"alice\"\ntoken = \"tok-a\"\ntoken_secret = \"sec-a\"\n"
            ),
            "{out}"
        );
        let out2 = edited(&out, |c| c.set_account("bob", Some(("tok-b", "sec-b"))));
        assert!(out2.starts_with(&out), "the first account as it was:\n{out2}");
        assert!(
            out2.ends_with("\n\n[[accounts]]\nname = \"bob\"\ntoken = \"tok-b\"\ntoken_secret = \"sec-b\"\n"),
            "{out2}"
        );
        let parsed: toml::Table = toml::from_str(&out2).unwrap();
        assert_eq!(parsed["accounts"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn replacing_tokens_keeps_their_comments_and_removing_leaves_the_others() {
        let text = "# mine\n[app]\nconsumer_key = \"k\"\n\n[[accounts]]\nname = \"alice\"\ntoken = \"old\"  # from the portal\ntoken_secret = \"old-s\"\n\n# bob's\n[[accounts]]\nname = \"bob\"\n";
        let out = edited(text, |c| c.set_account("alice", Some(("new", "new-s"))));
        assert!(out.contains("token = \"new\"  # from the portal\n") && !out.contains("old"), "{out}");
        let out = edited(&out, |c| assert!(c.remove_account("alice")));
        assert_eq!(out, "# mine\n[app]\nconsumer_key = \"k\"\n\n# bob's\n[[accounts]]\nname = \"bob\"\n");
        let out = edited(&out, |c| {
            assert!(!c.remove_account("carol"));
            c.set_account("bob", None);
            c.set_secrets_path("followq.secrets.toml");
        });
        assert!(
            out.starts_with("# mine\nsecrets = \"followq.secrets.toml\"\n\n[app]\n"),
            "after the opening comments: {out}"
        );
    }

    /// Found from the outside: removing the first account added took the template's example
    /// block with it; a CRLF file came back LF and lost its byte order mark.
    #[test]
    fn remove_keeps_the_template_s_block_and_a_crlf_file_stays_crlf() {
        let added = edited(TEMPLATE, |c| c.set_account("alice", Some(("t", "s"))));
        let out = edited(&added, |c| assert!(c.remove_account("alice")));
        assert_eq!(out, TEMPLATE, "back to the template, byte for byte");
        let two = edited(&added, |c| c.set_account("bob", Some(("u", "v"))));
        let out = edited(&two, |c| assert!(c.remove_account("alice")));
        assert!(out.contains("# [[accounts]]\n# name = \"alice\"\n# token = \"\"\n# token_secret = \"\"\n[[accounts]]\nname = \"bob\""), "{out}");

        let crlf = "\u{feff}# mine\r\n[app]\r\nconsumer_key = \"k\"\r\n";
        let out = edited(crlf, |c| c.set_account("alice", Some(("t", "s"))));
        assert!(out.starts_with("\u{feff}# mine\r\n[app]\r\n"), "{out:?}");
        assert!(!out.replace("\r\n", "").contains('\n'), "every line end CRLF: {out:?}");
        let parsed: toml::Table = toml::from_str(out.trim_start_matches('\u{feff}')).unwrap();
        assert_eq!(parsed["accounts"][0]["token"].as_str(), Some("t"));
    }

    #[test]
    fn the_secrets_file_is_keyed_by_account() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        let mut s = SecretsFile::open(&path).unwrap();
        assert!(!s.0.exists);
        s.set_account("alice", "t", "ts");
        s.set_account("bob-2", "u", "us");
        s.0.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(SECRETS_HEADER), "{text}");
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["accounts"]["bob-2"]["token_secret"].as_str(), Some("us"));
        let mut s = SecretsFile::open(&path).unwrap();
        assert!(s.has_account("alice") && s.remove_account("alice") && !s.has_account("alice"));
        assert!(s.remove_account("bob-2"));
        s.0.save().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), SECRETS_HEADER, "the header stays");
        let mut s = SecretsFile::open(&path).unwrap();
        s.set_account("carol", "c", "cs");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
