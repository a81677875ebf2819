//! OAuth 1.0a HMAC-SHA1 verification, written from RFC 5849 §3.4 independently of the client's
//! signer (oauth1-request), so a bug in one is caught by the other.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The `oauth_*` parameters of an `Authorization: OAuth …` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub params: Vec<(String, String)>,
    pub signature: String,
}

impl Header {
    /// A protocol parameter's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// RFC 3986 percent-encoding: everything but `A-Z a-z 0-9 - . _ ~`, upper-case hex.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` (and `+` as a space, as form encoding has it). None on a bad escape or bad UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `a=1&b=2` → decoded pairs. None on a malformed escape.
pub fn parse_pairs(s: &str) -> Option<Vec<(String, String)>> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Parses `OAuth k="v", k2="v2"`; `realm` is dropped, `oauth_signature` kept apart.
pub fn parse_header(h: &str) -> Option<Header> {
    let rest = h.strip_prefix("OAuth ")?;
    let mut out = Header::default();
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=')?;
        let v = v.trim().strip_prefix('"')?.strip_suffix('"')?;
        let (k, v) = (decode(k.trim())?, decode(v)?);
        match k.as_str() {
            "realm" => {}
            "oauth_signature" => out.signature = v,
            _ => out.params.push((k, v)),
        }
    }
    Some(out)
}

/// The signature base string: method, base URI, and every parameter, encoded and sorted.
pub fn base_string(method: &str, base_uri: &str, params: &[(String, String)]) -> String {
    let mut enc: Vec<(String, String)> = params.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    enc.sort();
    let joined = enc.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    format!("{}&{}&{}", method.to_ascii_uppercase(), encode(base_uri), encode(&joined))
}

/// True when `signature` (base64) is the HMAC-SHA1 of `base` under the two secrets. Constant-time.
pub fn verify(base: &str, consumer_secret: &str, token_secret: &str, signature: &str) -> bool {
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature) else { return false };
    let key = format!("{}&{}", encode(consumer_secret), encode(token_secret));
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key.as_bytes()) else { return false };
    mac.update(base.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

/// The signature a request should carry (for tests and the reference vectors).
pub fn sign(base: &str, consumer_secret: &str, token_secret: &str) -> String {
    let key = format!("{}&{}", encode(consumer_secret), encode(token_secret));
    // HMAC takes a key of any length; new_from_slice cannot fail for it.
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key length");
    mac.update(base.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The nonces seen, each with its request's timestamp: a nonce may be used once while its
/// timestamp could still be accepted.
#[derive(Debug, Default)]
pub struct Nonces {
    seen: std::collections::HashSet<(String, String)>,
    by_time: std::collections::VecDeque<(i64, String, String)>,
}

impl Nonces {
    /// True the first time `nonce` comes with consumer key `ck`; forgets nonces whose
    /// timestamps are older than `forget_before` (epoch seconds).
    pub fn first_use(&mut self, ck: &str, nonce: &str, timestamp: i64, forget_before: i64) -> bool {
        while self.by_time.front().is_some_and(|(t, _, _)| *t < forget_before) {
            if let Some((_, c, n)) = self.by_time.pop_front() {
                self.seen.remove(&(c, n));
            }
        }
        if !self.seen.insert((ck.to_string(), nonce.to_string())) {
            return false;
        }
        self.by_time.push_back((timestamp, ck.to_string(), nonce.to_string()));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const CS: &str = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw";
    const TS: &str = "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE";

    fn x_example() -> Vec<(String, String)> {
        p(&[
            ("status", "Hello Ladies + Gentlemen, a signed OAuth request!"),
            ("include_entities", "true"),
            ("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
            ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "1318622958"),
            ("oauth_token", "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb"),
            ("oauth_version", "1.0"),
        ])
    }

    const X_URL: &str = "https://api.twitter.com/1.1/statuses/update.json";
    const X_SIG: &str = "hCtSmYh+iHYCEqBWrE7C7hYmtUk=";

    #[test]
    fn accepts_the_published_x_example() {
        let base = base_string("POST", "https://api.x.com/1.1/statuses/update.json", &x_example());
        assert_eq!(
            base,
            "POST&https%3A%2F%2Fapi.x.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622958%26oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version%3D1.0%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed%2520OAuth%2520request%2521"
        );
        assert!(verify(&base, CS, TS, "Ls93hJiZbQ3akF3HF3x1Bz8/zU4="));
        assert!(verify(&base_string("POST", X_URL, &x_example()), CS, TS, X_SIG));
    }

    #[test]
    fn rejects_every_one_character_change() {
        let params = x_example();
        let ok = |m: &str, u: &str, ps: &[(String, String)], cs: &str, ts: &str| {
            verify(&base_string(m, u, ps), cs, ts, X_SIG)
        };
        assert!(ok("POST", X_URL, &params, CS, TS));
        assert!(!ok("PUT", X_URL, &params, CS, TS), "method");
        assert!(!ok("POST", "https://api.twitter.com/1.1/statuses/update.jsoN", &params, CS, TS), "url");
        assert!(!ok("POST", "http://api.twitter.com/1.1/statuses/update.json", &params, CS, TS), "scheme");
        assert!(!ok("POST", X_URL, &params, "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBx", TS), "consumer secret");
        assert!(!ok("POST", X_URL, &params, CS, "MswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE"), "token secret");
        for i in 0..params.len() {
            for change_key in [false, true] {
                let mut ps = params.clone();
                let s = if change_key { &mut ps[i].0 } else { &mut ps[i].1 };
                let last = s.pop().unwrap();
                s.push(if last == 'x' { 'y' } else { 'x' });
                assert!(!ok("POST", X_URL, &ps, CS, TS), "param {i} key={change_key}");
            }
        }
        assert!(
            !verify(&base_string("POST", X_URL, &params), CS, TS, "hCtSmYh+iHYCEqBWrE7C7hYmtUk"),
            "truncated signature"
        );
    }

    #[test]
    fn accepts_the_rfc5849_section_1_2_vectors() {
        let ck = "dpf43f3p2l4k3l03";
        let cs = "kd94hf93k423kf44";
        let initiate = p(&[
            ("oauth_callback", "http://printer.example.com/ready"),
            ("oauth_consumer_key", ck),
            ("oauth_nonce", "wIjqoS"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "137131200"),
        ]);
        assert!(verify(
            &base_string("POST", "https://photos.example.net/initiate", &initiate),
            cs,
            "",
            "74KNZJeDHnMBp0EMJ9ZHt/XKycU="
        ));
        let token = p(&[
            ("oauth_consumer_key", ck),
            ("oauth_token", "hh5s93j4hdidpola"),
            ("oauth_verifier", "hfdp7dh39dks9884"),
            ("oauth_nonce", "walatlh"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "137131201"),
        ]);
        assert!(verify(
            &base_string("POST", "https://photos.example.net/token", &token),
            cs,
            "hdhd0244k9j7ao03",
            "gKgrFCywp7rO0OXSjdot/IHF7IU="
        ));
        let photos = p(&[
            ("file", "vacation.jpg"),
            ("size", "original"),
            ("oauth_consumer_key", ck),
            ("oauth_token", "nnch734d00sl2jdk"),
            ("oauth_nonce", "chapoH"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "137131202"),
        ]);
        let base = base_string("GET", "http://photos.example.net/photos", &photos);
        assert_eq!(
            base,
            "GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3DchapoH%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131202%26oauth_token%3Dnnch734d00sl2jdk%26size%3Doriginal"
        );
        assert!(verify(&base, cs, "pfkkdhi9sl3r4s00", "MdpQcU8iPSUjWoN/UDMsK2sui9I="));
        assert!(!verify(&base, cs, "pfkkdhi9sl3r4s01", "MdpQcU8iPSUjWoN/UDMsK2sui9I="));
    }

    #[test]
    fn rfc5849_base_string_with_repeated_and_plus_decoded_parameters() {
        let mut ps = parse_pairs("b5=%3D%253D&a3=a&c%40=&a2=r%20b").unwrap();
        ps.extend(parse_pairs("c2&a3=2+q").unwrap());
        ps.extend(p(&[
            ("oauth_consumer_key", "9djdj82h48djs9d2"),
            ("oauth_token", "kkk9d7dh3k39sjv7"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "137131201"),
            ("oauth_nonce", "7d8f3e4a"),
        ]));
        assert_eq!(
            base_string("POST", "http://example.com/request", &ps),
            "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7"
        );
    }

    #[test]
    fn parses_the_documented_header() {
        let h = parse_header(r#"OAuth oauth_consumer_key="xvz1evFS4wEEPTGEFPHBog", oauth_nonce="kYjz", oauth_signature="tnnArxj06cWHq44gCs1OSKk%2FjLY%3D", oauth_signature_method="HMAC-SHA1", oauth_timestamp="1318622958", oauth_token="370773112-Gm", oauth_version="1.0", realm="x""#).unwrap();
        assert_eq!(h.signature, "tnnArxj06cWHq44gCs1OSKk/jLY=");
        assert_eq!(h.get("oauth_timestamp"), Some("1318622958"));
        assert_eq!(h.params.len(), 6);
        assert!(parse_header("Bearer abc").is_none());
    }
}
