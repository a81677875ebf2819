//! Property tests: percent-encoding, target normalisation, and the CSV reader on any bytes.

use followq::ingest::target::{self, Hint};
use followq::ingest::{self, Accounts, Input};
use followq::sandbox::auth;
use followq::store::{Store, TargetKind};
use proptest::prelude::*;

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

proptest! {
    /// RFC 3986 §2.3: unreserved bytes pass, every other byte is %XX in upper-case hex; the
    /// sandbox's encoder and the client's (oauth1-request) agree; decoding inverts it.
    #[test]
    fn percent_encoding_is_rfc3986(s in "\\PC{0,40}") {
        let e = auth::encode(&s);
        let bytes = e.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = &e[i + 1..i + 3];
                prop_assert!(hex.chars().all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)), "{e}");
                let byte = u8::from_str_radix(hex, 16).unwrap();
                prop_assert!(!unreserved(byte), "{byte} should not be encoded in {e}");
                i += 3;
            } else {
                prop_assert!(unreserved(bytes[i]), "{} left raw in {e}", bytes[i] as char);
                i += 1;
            }
        }
        prop_assert_eq!(auth::decode(&e).unwrap(), s.clone());
        let client = followq::api::oauth::query_string(&[("k", &s)]);
        prop_assert_eq!(client, format!("k={e}"));
    }

    /// Every accepted form of a screen name normalises to one dedupe key, and normalising the
    /// result again changes nothing.
    #[test]
    fn screen_name_forms_dedupe(name in "[A-Za-z0-9_]{1,15}", upper in any::<bool>()) {
        // X reserves some paths (x.com/home, x.com/i/…): no profile can have those names.
        prop_assume!(!target::is_reserved(&name));
        let shown = if upper { name.to_ascii_uppercase() } else { name.to_ascii_lowercase() };
        let forms = [
            format!("@{shown}"),
            format!("https://x.com/{shown}"),
            format!("http://www.twitter.com/{shown}/"),
            format!("twitter.com/{shown}/status/123"),
            format!("https://x.com/intent/user?screen_name={shown}"),
        ];
        for f in &forms {
            let (kind, t) = target::parse(f, Hint::Any).unwrap();
            prop_assert_eq!(kind, TargetKind::ScreenName);
            prop_assert_eq!(t.to_ascii_lowercase(), name.to_ascii_lowercase());
            let again = target::parse(&t, Hint::ScreenName).unwrap();
            prop_assert_eq!(again, (kind, t.clone()));
        }
        let (_, t) = target::parse(&name, Hint::ScreenName).unwrap();
        prop_assert_eq!(t, name);
    }

    /// Ids in every form normalise to their decimal value, idempotently.
    #[test]
    fn user_id_forms_dedupe(id in 1u64..) {
        for f in [id.to_string(), format!("https://x.com/i/user/{id}"), format!("twitter.com/intent/user?user_id={id}")] {
            let (kind, t) = target::parse(&f, Hint::Any).unwrap();
            prop_assert_eq!((kind, t.clone()), (TargetKind::UserId, id.to_string()));
            prop_assert_eq!(target::parse(&t, Hint::UserId).unwrap(), (kind, t.clone()));
        }
    }

    /// Anything at all: a result or a reason, never a panic.
    #[test]
    fn parse_never_panics(s in "\\PC{0,64}", hint in 0..3) {
        let hint = [Hint::Any, Hint::ScreenName, Hint::UserId][hint as usize];
        if let Ok((kind, t)) = target::parse(&s, hint) {
            match kind {
                TargetKind::ScreenName => prop_assert!(target::is_screen_name(&t)),
                TargetKind::UserId => prop_assert!(t.parse::<u64>().is_ok()),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any bytes fed to the CSV reader end as rows or rejects (or a file-level error), never a
    /// panic, and the counts add up.
    #[test]
    fn the_csv_reader_takes_any_bytes(bytes in proptest::collection::vec(
        prop_oneof![Just(b','), Just(b';'), Just(b'\t'), Just(b'"'), Just(b'\n'), Just(b'\r'), Just(b'@'), Just(b'/'), any::<u8>(), b'a'..=b'z', b'0'..=b'9'],
        0..400,
    )) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("fuzz.csv");
            std::fs::write(&path, &bytes).unwrap();
            let store = Store::open(&dir.path().join("q.db")).await.unwrap();
            let ids = store.sync_accounts(&["alice"]).await.unwrap();
            let accounts = Accounts::new(ids, None).unwrap();
            let mut rejects = 0u64;
            let mut on_reject = |_: &ingest::Reject| rejects += 1;
            let opts = ingest::Options { accounts: &accounts, dry_run: false, on_reject: &mut on_reject, content_hash: String::new() };
            if let Ok(s) = ingest::import(&store, &Input::File(path), opts).await {
                assert_eq!(s.rows_read, s.added + s.duplicates + s.rejected);
                assert_eq!(s.rejected, rejects);
                let total: i64 = store.job_counts().await.unwrap().iter().map(|c| c.n).sum();
                assert_eq!(total as u64, s.added);
            }
        });
    }
}
