//! Validation of the identifiers and names clients send, shared by the query
//! parser, the request bodies and the dump importer.

use std::fmt;

/// A field a client sent that breaks the contract. `param` is the name the
/// client used, so the error body can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    pub param: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(param: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            param: param.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.param, self.detail)
    }
}

/// One character of the class `[a-zA-Z0-9\u4e00-\u9fa5,-_]` exactly as the
/// VIAS page writes it: inside the brackets `,-_` is the range U+002C..U+005F,
/// which also covers `.`, `/`, `:`, `@`, `[`, `\`, `]`, `^` and the digits.
pub fn is_filter_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || ('\u{4e00}'..='\u{9fa5}').contains(&c) || (','..='_').contains(&c)
}

/// `min..=max` characters (not bytes).
pub fn check_length(param: &str, value: &str, min: usize, max: usize) -> Result<(), FieldError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(FieldError::new(
            param,
            format!("{param} must be {min} to {max} characters long, got {n}"),
        ));
    }
    Ok(())
}

/// Checks `^[a-zA-Z0-9\u4e00-\u9fa5,-_]{min,max}$`, counting characters.
pub fn check_filter_pattern(
    param: &str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<(), FieldError> {
    check_length(param, value, min, max)?;
    if let Some(bad) = value.chars().find(|c| !is_filter_char(*c)) {
        return Err(FieldError::new(
            param,
            format!(
                "{param} must match ^[a-zA-Z0-9\\u4e00-\\u9fa5,-_]{{{min},{max}}}$; character {bad:?} is not allowed"
            ),
        ));
    }
    Ok(())
}

/// Ids of projects, groups, sources and tasks: `^[a-zA-Z0-9_-]{1,64}$`.
pub fn check_id(param: &str, value: &str) -> Result<(), FieldError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            param,
            format!("{param} must match ^[a-zA-Z0-9_-]{{1,64}}$"),
        ))
    }
}

/// Batch task ids: 32 lowercase hex characters.
pub fn check_batch_id(param: &str, value: &str) -> Result<(), FieldError> {
    if value.len() == 32
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(FieldError::new(
            param,
            format!("{param} must be 32 lowercase hex characters"),
        ))
    }
}

/// VIAS's `^[\u4E00-\u9FA5a-zA-Z0-9_-]{1,100}$`, which batch and service
/// names share.
fn is_cjk_word(value: &str) -> bool {
    (1..=100).contains(&value.chars().count())
        && value.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || c == '-'
                || c == '_'
                || ('\u{4e00}'..='\u{9fa5}').contains(&c)
        })
}

/// Batch task names: 1–100 characters of CJK, letters, digits, `-` and `_`.
pub fn check_batch_name(param: &str, value: &str) -> Result<(), FieldError> {
    if is_cjk_word(value) {
        Ok(())
    } else {
        Err(FieldError::new(
            param,
            format!("{param} must be 1 to 100 characters of CJK, letters, digits, '-' or '_'"),
        ))
    }
}

/// Service names as VIAS has them: `^[\u4E00-\u9FA5a-zA-Z0-9_-]{1,100}$`.
pub fn check_service_name(param: &str, value: &str) -> Result<(), FieldError> {
    if is_cjk_word(value) {
        Ok(())
    } else {
        Err(FieldError::new(
            param,
            format!("{param} must match ^[\\u4E00-\\u9FA5a-zA-Z0-9_-]{{1,100}}$"),
        ))
    }
}

/// A service name that refers to a registered service: VIAS's pattern, or
/// the older dotted form (`^[a-z0-9.]{3,32}$`) that dumps from before it
/// may hold. New services take VIAS's pattern only.
pub fn check_service_ref(param: &str, value: &str) -> Result<(), FieldError> {
    check_service_name(param, value).or_else(|e| check_service_token(param, value).map_err(|_| e))
}

/// Service versions: `^[a-z0-9.]{3,32}$`.
pub fn check_service_token(param: &str, value: &str) -> Result<(), FieldError> {
    let ok = (3..=32).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            param,
            format!("{param} must match ^[a-z0-9.]{{3,32}}$"),
        ))
    }
}

/// Display names (group, source, algorithm, vendor, project, user): `min..=max`
/// characters, no control characters, no commas (a comma would make the
/// comma-joined `video_group_name` and the comma-separated filters ambiguous).
pub fn check_display_name(
    param: &str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<(), FieldError> {
    check_length(param, value, min, max)?;
    if value.chars().any(|c| c.is_control() || c == ',') {
        return Err(FieldError::new(
            param,
            format!("{param} must not contain commas or control characters"),
        ));
    }
    if value.trim() != value {
        return Err(FieldError::new(
            param,
            format!("{param} must not start or end with white space"),
        ));
    }
    Ok(())
}

/// Free text up to `max` characters without control characters other than
/// newlines and tabs.
pub fn check_text(param: &str, value: &str, max: usize) -> Result<(), FieldError> {
    let n = value.chars().count();
    if n > max {
        return Err(FieldError::new(
            param,
            format!("{param} must be at most {max} characters, got {n}"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(FieldError::new(
            param,
            format!("{param} must not contain control characters"),
        ));
    }
    Ok(())
}

/// Batch priority, case-insensitive on input, lowercase when stored.
pub fn parse_priority(param: &str, value: &str) -> Result<&'static str, FieldError> {
    ["low", "medium", "high"]
        .into_iter()
        .find(|p| p.eq_ignore_ascii_case(value))
        .ok_or_else(|| FieldError::new(param, format!("{param} must be low, medium or high")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_class_is_the_literal_range() {
        for c in [
            '.', '/', ':', '@', '[', ']', '\\', '^', '_', ',', '-', '0', 'Z', 'a', '中', '\u{9fa5}',
        ] {
            assert!(is_filter_char(c), "{c:?} should pass");
        }
        for c in [
            ' ', '~', '!', '`', '+', '*', '\u{4dff}', '\u{9fa6}', 'é', '{',
        ] {
            assert!(!is_filter_char(c), "{c:?} should fail");
        }
    }

    #[test]
    fn filter_pattern_counts_characters() {
        assert!(check_filter_pattern("m", "中文", 2, 64).is_ok());
        assert!(check_filter_pattern("m", "中", 2, 64).is_err());
        assert!(check_filter_pattern("m", &"中".repeat(64), 2, 64).is_ok());
        assert!(check_filter_pattern("m", &"中".repeat(65), 2, 64).is_err());
        assert_eq!(
            check_filter_pattern("m", "a b", 2, 64).unwrap_err().param,
            "m"
        );
    }

    #[test]
    fn ids_and_names() {
        assert!(check_id("id", "abc_DEF-1").is_ok());
        assert!(check_id("id", "").is_err());
        assert!(check_id("id", &"a".repeat(65)).is_err());
        assert!(check_id("id", "a.b").is_err());
        assert!(check_batch_id("id", &"0f".repeat(16)).is_ok());
        assert!(check_batch_id("id", &"0F".repeat(16)).is_err());
        assert!(check_batch_name("name", "夜间-巡检_1").is_ok());
        assert!(check_batch_name("name", &"a".repeat(101)).is_err());
        assert!(check_batch_name("name", "a b").is_err());
        assert!(check_service_token("v", "1.0.0").is_ok());
        assert!(check_service_token("v", "1.0").is_ok());
        assert!(check_service_token("v", "10").is_err());
        assert!(check_service_token("v", "Helmet").is_err());
        assert!(check_display_name("n", "North gate", 1, 64).is_ok());
        assert!(check_display_name("n", "a,b", 1, 64).is_err());
        assert!(check_display_name("n", " a", 1, 64).is_err());
        assert_eq!(parse_priority("p", "HIGH"), Ok("high"));
        assert!(parse_priority("p", "urgent").is_err());
    }
}
