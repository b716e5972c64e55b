//! Helpers every catalogue route shares: VIAS's list paging (`is_paged`
//! defaulting to false, `page_size` 5–200, `order_by`), new ids, required
//! fields, and an optional JSON body.

use super::error::{ApiError, ApiResult};
use crate::domain::query::QueryParams;
use crate::domain::{field, random_hex, FieldError};
use crate::store::{Listing, Page};

/// `is_paged` (default false: every row), `page_size` (5–200, default 10),
/// `page_num` (1–`max_page`, default 1), `order_by` (`asc`|`desc`, default
/// desc), and `sort_name` among `sorts` (default the first).
pub(super) fn listing<S: Copy>(
    q: &QueryParams,
    sorts: &[(&str, S)],
    max_page: u32,
) -> Result<Listing<S>, FieldError> {
    let paged = q.bool("is_paged", false)?;
    let size = q.int("page_size", 5, 200, 10)?;
    let num = q.int("page_num", 1, max_page, 1)?;
    let names: Vec<&str> = sorts.iter().map(|(n, _)| *n).collect();
    let sort = match q.choice("sort_name", &names)? {
        Some(i) => sorts[i].1,
        None => sorts[0].1,
    };
    let descending = q.choice("order_by", &["asc", "desc"])? != Some(0);
    Ok(Listing {
        sort,
        descending,
        page: paged.then_some(Page {
            offset: u64::from(num - 1) * u64::from(size),
            limit: u64::from(size),
        }),
    })
}

/// A client-chosen id (our extension; the SDK never sends one) or a new one.
/// A new object's id: the client's, checked, or a random one. `reserved`
/// is the word its collection's list route puts where an id goes
/// (`/video-group/groups`, `/source/sources`): an object of that id could
/// be created but never shown, changed or deleted.
pub(super) fn new_id(given: Option<String>, reserved: &str) -> ApiResult<String> {
    match given {
        Some(id) => {
            field::check_id("id", &id)?;
            if id == reserved {
                return Err(FieldError::new(
                    "id",
                    format!("id may not be {reserved:?}: that path lists them"),
                )
                .into());
            }
            Ok(id)
        }
        None => random_hex(16).map_err(|e| ApiError::Internal(e.to_string())),
    }
}

pub(super) fn required<T>(v: Option<T>, name: &str) -> Result<T, FieldError> {
    v.ok_or_else(|| FieldError::new(name, format!("{name} is required")))
}

/// A free-text field of at most `max` characters.
pub(super) fn text(
    param: &str,
    v: Option<String>,
    max: usize,
) -> Result<Option<String>, FieldError> {
    if let Some(t) = &v {
        field::check_text(param, t, max)?;
    }
    Ok(v)
}

/// Ids given in a list: each with the id pattern, at most `max` of them.
pub(super) fn ids(
    param: &str,
    v: Option<Vec<String>>,
    max: usize,
) -> Result<Vec<String>, FieldError> {
    let v = v.unwrap_or_default();
    if v.len() > max {
        return Err(FieldError::new(
            param,
            format!("{param} lists at most {max} ids"),
        ));
    }
    for id in &v {
        field::check_id(param, id)?;
    }
    Ok(v)
}
