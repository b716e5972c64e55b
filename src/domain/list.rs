//! `ListBatchTasksParams`: the query of `GET /v2/{project_id}/batch-tasks`,
//! validated into domain types exactly as the contract's table says.

use super::field::{check_filter_pattern, FieldError};
use super::query::{comma_items, QueryParams};
use super::state::TaskState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    CreatedAt,
    TaskCount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    Asc,
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameField {
    BatchTaskName,
    PublishServiceName,
}

/// A case-insensitive, literal substring search on one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameLike {
    pub field: NameField,
    /// The needle, lowercased; every character is literal.
    pub needle: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page_num: u32,
    pub page_size: u32,
}

impl Paging {
    pub fn offset(&self) -> u64 {
        u64::from(self.page_num - 1) * u64::from(self.page_size)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListBatchTasksParams {
    /// `None` when `is_paged=false`: every matching batch is returned.
    pub paging: Option<Paging>,
    pub sort: SortField,
    pub order: SortOrder,
    /// Group ids or names; a batch matches if any of its groups has one of them.
    pub video_groups: Vec<String>,
    pub task_states: Vec<TaskState>,
    pub name_like: Option<NameLike>,
    pub manufacturers: Vec<String>,
    pub titles: Vec<String>,
}

pub const LIST_BATCH_TASKS_PARAMS: [&str; 11] = [
    "is_paged",
    "page_size",
    "page_num",
    "order_by",
    "sort_name",
    "video_group",
    "task_state",
    "type_like",
    "name_like",
    "manufacturer",
    "title",
];

impl Default for ListBatchTasksParams {
    fn default() -> Self {
        ListBatchTasksParams {
            paging: Some(Paging {
                page_num: 1,
                page_size: 10,
            }),
            sort: SortField::CreatedAt,
            order: SortOrder::Desc,
            video_groups: Vec::new(),
            task_states: Vec::new(),
            name_like: None,
            manufacturers: Vec::new(),
            titles: Vec::new(),
        }
    }
}

impl ListBatchTasksParams {
    /// Parses the raw query string (without `?`).
    pub fn parse(raw: Option<&str>) -> Result<Self, FieldError> {
        let q = QueryParams::parse(raw, &LIST_BATCH_TASKS_PARAMS)?;

        let is_paged = q.choice("is_paged", &["true", "false"])? != Some(1);
        // Validated even when is_paged=false, as the contract says.
        let page_size = q.int("page_size", 5, 200, 10)?;
        let page_num = q.int("page_num", 1, 10_000, 1)?;
        let order = match q.choice("order_by", &["asc", "desc"])? {
            Some(0) => SortOrder::Asc,
            _ => SortOrder::Desc,
        };
        let sort = match q.choice("sort_name", &["task_count", "created_at"])? {
            Some(0) => SortField::TaskCount,
            _ => SortField::CreatedAt,
        };

        let video_groups = match q.get("video_group") {
            Some(v) => {
                check_filter_pattern("video_group", v, 1, 1000)?;
                comma_items(v)
            }
            None => Vec::new(),
        };

        let task_states = match q.get("task_state") {
            Some(v) => {
                let items = comma_items(v);
                if items.is_empty() {
                    return Err(FieldError::new(
                        "task_state",
                        "task_state must name at least one task state",
                    ));
                }
                let mut states = Vec::with_capacity(items.len());
                for item in items {
                    let st = item.parse::<TaskState>().map_err(|_| {
                        FieldError::new(
                            "task_state",
                            format!("task_state {item:?} is not a task state"),
                        )
                    })?;
                    if !states.contains(&st) {
                        states.push(st);
                    }
                }
                states
            }
            None => Vec::new(),
        };

        let type_like = match q.choice("type_like", &["batch_task_name", "publish_service_name"])? {
            Some(0) => Some(NameField::BatchTaskName),
            Some(_) => Some(NameField::PublishServiceName),
            None => None,
        };
        let name_like = match q.get("name_like") {
            Some(v) => {
                let n = v.chars().count();
                if n > 100 {
                    return Err(FieldError::new(
                        "name_like",
                        format!("name_like must be at most 100 characters, got {n}"),
                    ));
                }
                if v.is_empty() {
                    None
                } else {
                    let field = type_like.ok_or_else(|| {
                        FieldError::new(
                            "name_like",
                            "name_like needs type_like to say which field to search",
                        )
                    })?;
                    Some(NameLike {
                        field,
                        needle: v.to_lowercase(),
                    })
                }
            }
            None => None,
        };

        let list = |name: &str| -> Result<Vec<String>, FieldError> {
            match q.get(name) {
                Some(v) => {
                    check_filter_pattern(name, v, 2, 64)?;
                    Ok(comma_items(v))
                }
                None => Ok(Vec::new()),
            }
        };
        let manufacturers = list("manufacturer")?;
        let titles = list("title")?;

        Ok(ListBatchTasksParams {
            paging: is_paged.then_some(Paging {
                page_num,
                page_size,
            }),
            sort,
            order,
            video_groups,
            task_states,
            name_like,
            manufacturers,
            titles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Result<ListBatchTasksParams, FieldError> {
        ListBatchTasksParams::parse(Some(s))
    }

    #[test]
    fn defaults() {
        assert_eq!(
            ListBatchTasksParams::parse(None).unwrap(),
            ListBatchTasksParams::default()
        );
        assert_eq!(
            p("unknown=1&unknown=2").unwrap(),
            ListBatchTasksParams::default()
        );
    }

    #[test]
    fn enums_are_case_insensitive() {
        let v = p("order_by=ASC&sort_name=Task_Count&is_paged=FALSE&task_state=RUNNING,stopped")
            .unwrap();
        assert_eq!(v.order, SortOrder::Asc);
        assert_eq!(v.sort, SortField::TaskCount);
        assert_eq!(v.paging, None);
        assert_eq!(v.task_states, vec![TaskState::Running, TaskState::Stopped]);
    }

    #[test]
    fn name_like_rules() {
        assert_eq!(p("name_like=").unwrap().name_like, None);
        assert_eq!(p("name_like=x").unwrap_err().param, "name_like");
        let v = p("type_like=publish_service_name&name_like=A%25_%5C").unwrap();
        assert_eq!(
            v.name_like,
            Some(NameLike {
                field: NameField::PublishServiceName,
                needle: "a%_\\".into()
            })
        );
        assert!(p(&format!(
            "type_like=batch_task_name&name_like={}",
            "中".repeat(100)
        ))
        .is_ok());
        assert!(p(&format!(
            "type_like=batch_task_name&name_like={}",
            "中".repeat(101)
        ))
        .is_err());
        assert_eq!(p("type_like=bogus").unwrap_err().param, "type_like");
    }

    #[test]
    fn errors_name_the_parameter() {
        for (q, param) in [
            ("page_size=4", "page_size"),
            ("page_num=0", "page_num"),
            ("is_paged=false&page_num=10001", "page_num"),
            ("order_by=up", "order_by"),
            ("sort_name=name", "sort_name"),
            ("video_group=", "video_group"),
            ("video_group=a%20b", "video_group"),
            ("task_state=", "task_state"),
            ("task_state=running,nope", "task_state"),
            ("manufacturer=a", "manufacturer"),
            ("title=~~", "title"),
            ("is_paged=yes", "is_paged"),
            ("page_size=10&page_size=10", "page_size"),
        ] {
            assert_eq!(p(q).unwrap_err().param, param, "{q}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,300}") {
            let _ = ListBatchTasksParams::parse(Some(&s));
        }

        #[test]
        fn page_size_accepts_exactly_5_to_200(n in 0u32..400) {
            let r = p(&format!("page_size={n}"));
            prop_assert_eq!(r.is_ok(), (5..=200).contains(&n));
        }
    }
}
