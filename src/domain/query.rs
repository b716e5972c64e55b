//! Raw query-string decoding shared by every list route: percent-decoding to
//! UTF-8, and the "a known parameter given twice is an error" rule.

use super::field::FieldError;
use percent_encoding::percent_decode;

/// The known parameters of one route, decoded, each at most once.
#[derive(Debug, Default)]
pub struct QueryParams {
    values: Vec<(&'static str, String)>,
}

impl QueryParams {
    /// Decodes `raw` (without the leading `?`). Only parameters named in
    /// `known` are kept; others are ignored, as the contract says. A known
    /// parameter that appears twice, or whose value is not UTF-8, is an error
    /// naming it.
    pub fn parse(raw: Option<&str>, known: &[&'static str]) -> Result<QueryParams, FieldError> {
        Self::parse_with_lists(raw, known, &[])
    }

    /// As [`QueryParams::parse`], but the parameters in `lists` may be given
    /// several times (the SDK repeats the key for a list): [`Self::all`]
    /// returns every value.
    pub fn parse_with_lists(
        raw: Option<&str>,
        known: &[&'static str],
        lists: &[&'static str],
    ) -> Result<QueryParams, FieldError> {
        let mut out = QueryParams::default();
        let Some(raw) = raw else { return Ok(out) };
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let Ok(key) = decode(k) else { continue };
            let Some(name) = known.iter().find(|n| **n == key) else {
                continue;
            };
            let value = decode(v).map_err(|_| {
                FieldError::new(
                    *name,
                    format!("{name} is not valid UTF-8 after percent-decoding"),
                )
            })?;
            if !lists.contains(name) && out.values.iter().any(|(n, _)| n == name) {
                return Err(FieldError::new(
                    *name,
                    format!("{name} is given more than once"),
                ));
            }
            out.values.push((name, value));
        }
        Ok(out)
    }

    /// Every value of a repeatable parameter, in order (empty values and
    /// comma-separated items each count).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(n, _)| *n == name)
            .flat_map(|(_, v)| v.split(','))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// A boolean `true`/`false` (any case), or `default` when absent.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, FieldError> {
        Ok(match self.choice(name, &["true", "false"])? {
            Some(0) => true,
            Some(_) => false,
            None => default,
        })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// An integer within `min..=max`; anything else (sign, fraction, empty,
    /// overflow) is an error naming the parameter.
    pub fn int(&self, name: &str, min: u32, max: u32, default: u32) -> Result<u32, FieldError> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        let bad = || {
            FieldError::new(
                name,
                format!("{name} must be an integer from {min} to {max}, got {v:?}"),
            )
        };
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match v.parse::<u64>() {
            Ok(n) if (u64::from(min)..=u64::from(max)).contains(&n) => Ok(n as u32),
            _ => Err(bad()),
        }
    }

    /// One of `choices`, compared case-insensitively; returns the index.
    pub fn choice(&self, name: &str, choices: &[&str]) -> Result<Option<usize>, FieldError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        choices
            .iter()
            .position(|c| c.eq_ignore_ascii_case(v))
            .map(Some)
            .ok_or_else(|| {
                FieldError::new(
                    name,
                    format!("{name} must be one of {}, got {v:?}", choices.join(", ")),
                )
            })
    }
}

/// Form decoding: `+` is a space, `%XX` a byte; the result must be UTF-8.
fn decode(s: &str) -> Result<String, std::str::Utf8Error> {
    let plus = s.replace('+', " ");
    let bytes: Vec<u8> = percent_decode(plus.as_bytes()).collect();
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => Err(e.utf8_error()),
    }
}

/// Splits a comma list, dropping empty items and repeats, keeping order.
pub fn comma_items(v: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in v.split(',').filter(|i| !i.is_empty()) {
        if !out.iter().any(|o| o == item) {
            out.push(item.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_rejects_duplicates() {
        let q = QueryParams::parse(Some("a=%E4%B8%AD+x&zz=1&zz=2&b="), &["a", "b"]).unwrap();
        assert_eq!(q.get("a"), Some("中 x"));
        assert_eq!(q.get("b"), Some(""));
        assert_eq!(q.get("zz"), None);
        let e = QueryParams::parse(Some("a=1&a=1"), &["a"]).unwrap_err();
        assert_eq!(e.param, "a");
        let e = QueryParams::parse(Some("a=%FF"), &["a"]).unwrap_err();
        assert_eq!(e.param, "a");
    }

    #[test]
    fn integers_are_strict() {
        let q = |s: &str| QueryParams::parse(Some(s), &["n"]).unwrap();
        assert_eq!(q("n=5").int("n", 5, 200, 10), Ok(5));
        assert_eq!(q("").int("n", 5, 200, 10), Ok(10));
        for bad in [
            "n=4",
            "n=201",
            "n=",
            "n=+5",
            "n=-5",
            "n=5.0",
            "n=1e2",
            "n=99999999999999999999999",
            "n= 5",
        ] {
            assert!(q(bad).int("n", 5, 200, 10).is_err(), "{bad}");
        }
        assert_eq!(q("n=007").int("n", 5, 200, 10), Ok(7));
    }

    #[test]
    fn comma_lists() {
        assert_eq!(comma_items(",a,,b,a,"), vec!["a", "b"]);
        assert!(comma_items(",,").is_empty());
    }
}
