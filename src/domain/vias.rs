//! VIAS's rules for the catalogue's fields: names, coordinates, tags, pool
//! names, source types, and the XML `type_config` a video source carries.
//! Checked at the API's edge; the store trusts what it is given.

use super::field::{check_length, FieldError};

/// The `alg_status` values VIAS lists (ListUserServices).
pub const ALG_STATUSES: [&str; 9] = [
    "service_running",
    "service_deploying",
    "service_failed",
    "service_stopping",
    "service_stopped",
    "service_upgrading",
    "service_finished",
    "service_concerning",
    "not_deployed",
];

/// Video source types VIAS lists (the HCS variant's too). Compared
/// case-insensitively; stored as listed here.
pub const SOURCE_TYPES: [&str; 8] = [
    "obs",
    "vcn",
    "url",
    "restful",
    "camera",
    "VIDEO_PLATFORM",
    "VIDEO_IMAGE_DB",
    "RTSP_STREAM",
];

/// The ListVideoSources `type` filter also knows `ivm`.
pub const SOURCE_TYPE_FILTERS: [&str; 9] = [
    "obs",
    "vcn",
    "url",
    "restful",
    "camera",
    "ivm",
    "VIDEO_PLATFORM",
    "VIDEO_IMAGE_DB",
    "RTSP_STREAM",
];

/// One of `allowed`, case-insensitively, in its listed spelling.
pub fn one_of(
    param: &str,
    value: &str,
    allowed: &[&'static str],
) -> Result<&'static str, FieldError> {
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(value))
        .copied()
        .ok_or_else(|| {
            FieldError::new(
                param,
                format!("{param} must be one of {}", allowed.join(", ")),
            )
        })
}

fn cjk(c: char) -> bool {
    ('\u{4e00}'..='\u{9fa5}').contains(&c)
}

fn check_chars(
    param: &str,
    value: &str,
    min: usize,
    max: usize,
    allowed: impl Fn(char) -> bool,
    what: &str,
) -> Result<(), FieldError> {
    check_length(param, value, min, max)?;
    if value.chars().all(allowed) {
        Ok(())
    } else {
        Err(FieldError::new(
            param,
            format!("{param} may hold only {what}"),
        ))
    }
}

/// CreateVideoSource `video_source_name`: CJK, letters, digits, space and
/// `.-_()（）`, 1–100, no leading or trailing space.
pub fn check_source_name(param: &str, v: &str) -> Result<(), FieldError> {
    check_chars(
        param,
        v,
        1,
        100,
        |c| c.is_ascii_alphanumeric() || cjk(c) || " .-_()（）".contains(c),
        "CJK characters, letters, digits, spaces and .-_()（）",
    )?;
    if v.trim() != v {
        return Err(FieldError::new(
            param,
            format!("{param} must not start or end with a space"),
        ));
    }
    Ok(())
}

/// CreateVideoGroup `video_group_name`: CJK, letters and digits, 1–20.
pub fn check_group_name(param: &str, v: &str) -> Result<(), FieldError> {
    check_chars(
        param,
        v,
        1,
        20,
        |c| c.is_ascii_alphanumeric() || cjk(c),
        "CJK characters, letters and digits",
    )
}

/// UpdateVideoGroup `video_group_name`: also `-` and `_`.
pub fn check_group_rename(param: &str, v: &str) -> Result<(), FieldError> {
    check_chars(
        param,
        v,
        1,
        20,
        |c| c.is_ascii_alphanumeric() || cjk(c) || c == '-' || c == '_',
        "CJK characters, letters, digits, - and _",
    )
}

/// Tags: at most 4, each 1–10 of CJK, letters, digits, `-`, `_`.
pub fn check_tags(param: &str, tags: &[String]) -> Result<(), FieldError> {
    if tags.len() > 4 {
        return Err(FieldError::new(
            param,
            format!("{param} holds at most 4 tags"),
        ));
    }
    for t in tags {
        check_chars(
            param,
            t,
            1,
            10,
            |c| c.is_ascii_alphanumeric() || cjk(c) || c == '-' || c == '_',
            "CJK characters, letters, digits, - and _",
        )?;
    }
    Ok(())
}

/// A coordinate as numeric text within `-limit..=limit` (latitude 90,
/// longitude 180), at most five decimals.
pub fn check_coordinate(param: &str, v: &str, limit: f64) -> Result<(), FieldError> {
    let bad = || {
        FieldError::new(
            param,
            format!("{param} must be a number from -{limit} to {limit} with at most 5 decimals"),
        )
    };
    let digits = v.strip_prefix('-').unwrap_or(v);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let shape = !int.is_empty()
        && int.len() <= 3
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 5
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(digits.contains('.') && frac.is_empty());
    match v.parse::<f64>() {
        Ok(x) if shape && x.abs() <= limit => Ok(()),
        _ => Err(bad()),
    }
}

/// Edge pool names: lowercase letters, digits and `-`, 4–32, starting with a
/// letter and ending with a letter or digit.
pub fn check_pool_name(param: &str, v: &str) -> Result<(), FieldError> {
    check_chars(
        param,
        v,
        4,
        32,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        "lowercase letters, digits and -",
    )?;
    let first = v.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let last = v
        .chars()
        .last()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if first && last {
        Ok(())
    } else {
        Err(FieldError::new(
            param,
            format!("{param} must start with a letter and end with a letter or digit"),
        ))
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// XML element text: a CDATA section as it stands, else the five named
/// entities and numeric character references decoded (anything else that
/// starts with `&` is kept as written).
fn unescape(s: &str) -> String {
    if let Some(inner) = s
        .strip_prefix("<![CDATA[")
        .and_then(|r| r.strip_suffix("]]>"))
    {
        return inner.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').and_then(|end| {
            let c = match &rest[1..end] {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "amp" => Some('&'),
                r => r
                    .strip_prefix("#x")
                    .or_else(|| r.strip_prefix("#X"))
                    .map(|h| u32::from_str_radix(h, 16))
                    .or_else(|| r.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32)
                    .filter(|c| !c.is_control() || c.is_whitespace()),
            };
            c.map(|c| (c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `type_config` of a source registered by URL.
pub fn url_type_config(url: &str) -> String {
    format!(
        "<type>URL</type><config><URL_ADDRESS>{}</URL_ADDRESS></config>",
        escape(url)
    )
}

/// The stream address in a `type_config`: the text of its `URL_ADDRESS`,
/// `RTSP_URL` or `URL` element, the first that is present and not empty.
pub fn url_in_type_config(xml: &str) -> Option<String> {
    ["URL_ADDRESS", "RTSP_URL", "URL"].iter().find_map(|tag| {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let start = xml.find(&open)? + open.len();
        let len = xml[start..].find(&close)?;
        let text = unescape(xml[start..start + len].trim());
        (!text.is_empty()).then_some(text)
    })
}

/// A `type_config`: XML text of at most 1024 characters without control
/// characters other than white space.
pub fn check_type_config(param: &str, v: &str) -> Result<(), FieldError> {
    check_length(param, v, 1, 1024)?;
    if v.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return Err(FieldError::new(
            param,
            format!("{param} must not contain control characters"),
        ));
    }
    if !v.trim_start().starts_with('<') {
        return Err(FieldError::new(param, format!("{param} must be XML, e.g. <type>URL</type><config><URL_ADDRESS>rtsp://…</URL_ADDRESS></config>")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_config_urls() {
        let x = url_type_config("rtsp://a/b?x=1&y=<2>");
        assert_eq!(
            url_in_type_config(&x).as_deref(),
            Some("rtsp://a/b?x=1&y=<2>")
        );
        let restful = "<type>RESTFUL</type><config><HTTP_CHECK>true</HTTP_CHECK><URL>http://api</URL><RTSP_URL>rtsp://s</RTSP_URL></config>";
        assert_eq!(url_in_type_config(restful).as_deref(), Some("rtsp://s"));
        assert_eq!(
            url_in_type_config(
                "<type>CAMERA</type><config><EDGE_CAMERA_ID>7</EDGE_CAMERA_ID></config>"
            ),
            None
        );
        assert_eq!(
            url_in_type_config("<URL_ADDRESS> </URL_ADDRESS><URL>u</URL>").as_deref(),
            Some("u")
        );
        // A CDATA section is taken as written; character references decode;
        // what is not a reference stays as it is.
        for (inner, url) in [
            ("<![CDATA[rtsp://x/a?b=1&c=<2>]]>", "rtsp://x/a?b=1&c=<2>"),
            ("rtsp://x/a?b=1&#38;c=&#x32;", "rtsp://x/a?b=1&c=2"),
            ("rtsp://x/&bogus;&amp;&#0;&", "rtsp://x/&bogus;&&#0;&"),
            ("rtsp://x/&#xD800;", "rtsp://x/&#xD800;"),
        ] {
            let xml =
                format!("<type>URL</type><config><URL_ADDRESS>{inner}</URL_ADDRESS></config>");
            assert_eq!(url_in_type_config(&xml).as_deref(), Some(url), "{inner}");
        }
    }

    #[test]
    fn names_and_values() {
        assert!(check_source_name("n", "北门 cam-1 (east)（东）").is_ok());
        assert!(check_source_name("n", " cam").is_err());
        assert!(check_source_name("n", "cam!").is_err());
        assert!(check_group_name("n", "北门1").is_ok());
        assert!(check_group_name("n", "north-gate").is_err());
        assert!(check_group_rename("n", "north-gate").is_ok());
        assert!(check_group_name("n", &"a".repeat(21)).is_err());
        assert!(check_coordinate("lat", "39.90469", 90.0).is_ok());
        assert!(check_coordinate("lat", "-90", 90.0).is_ok());
        for bad in ["90.1", "1e2", "39.904691", "", "-", "1.", "abc", "0x10"] {
            assert!(check_coordinate("lat", bad, 90.0).is_err(), "{bad}");
        }
        assert!(check_coordinate("lon", "-180.00000", 180.0).is_ok());
        assert!(check_tags("tag", &["a".into(), "烟火".into()]).is_ok());
        assert!(check_tags("tag", &vec!["a".to_owned(); 5]).is_err());
        assert!(check_tags("tag", &["a b".into()]).is_err());
        assert!(check_pool_name("name", "pool-1").is_ok());
        for bad in ["1pool", "pool-", "Pool", "poo", "p_ool"] {
            assert!(check_pool_name("name", bad).is_err(), "{bad}");
        }
        assert_eq!(one_of("type", "URL", &SOURCE_TYPES), Ok("url"));
        assert_eq!(
            one_of("type", "rtsp_stream", &SOURCE_TYPES),
            Ok("RTSP_STREAM")
        );
        assert!(one_of("type", "ivm", &SOURCE_TYPES).is_err());
    }
}
