//! The in-memory read model behind `GET /v2/{project_id}/batch-tasks`: per
//! project, every batch row with its counters, kept in both sort orders, so
//! a list call touches no database. The database stays the source of truth:
//! a view is loaded from it on first use, refreshed from it after every
//! local write (before the write returns), and from the change feed for
//! writes made by other processes.

use super::BatchTaskRow;
use crate::domain::{ListBatchTasksParams, NameField, SortField, SortOrder};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// One batch as the list needs it.
#[derive(Debug, Clone)]
pub struct BatchEntry {
    pub pk: i64,
    pub row: Arc<BatchTaskRow>,
    pub name_lc: String,
    pub service_name_lc: String,
    /// The batch's groups, in batch order: (pk, id, name).
    pub groups: Vec<(i64, String, String)>,
}

impl BatchEntry {
    fn state_mask(&self) -> u32 {
        self.row
            .counters
            .iter()
            .enumerate()
            .fold(0, |m, (i, n)| if *n > 0 { m | (1 << i) } else { m })
    }
    fn created_key(&self) -> (i64, &str) {
        (self.row.created_at, &self.row.id)
    }
    fn count_key(&self) -> (i64, &str) {
        (self.row.num_task, &self.row.id)
    }
}

/// One project's batches, sorted by `(created_at, id)` and by
/// `(num_task, id)`; descending order is the reverse walk.
#[derive(Debug, Default)]
pub struct ProjectView {
    by_pk: HashMap<i64, Arc<BatchEntry>>,
    by_created: Vec<Arc<BatchEntry>>,
    by_count: Vec<Arc<BatchEntry>>,
}

/// The rows of one list answer: `count` matches, `rows` the requested page
/// (or every match when not paged), sharing the view's rows.
#[derive(Debug, Clone, Default)]
pub struct ViewPage {
    pub count: u64,
    pub rows: Vec<Arc<BatchTaskRow>>,
}

impl ProjectView {
    pub fn new(entries: Vec<BatchEntry>) -> ProjectView {
        let mut v = ProjectView::default();
        for e in entries {
            let e = Arc::new(e);
            v.by_pk.insert(e.pk, e.clone());
            v.by_created.push(e.clone());
            v.by_count.push(e);
        }
        v.by_created
            .sort_by(|a, b| a.created_key().cmp(&b.created_key()));
        v.by_count.sort_by(|a, b| a.count_key().cmp(&b.count_key()));
        v
    }

    pub fn len(&self) -> usize {
        self.by_pk.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pk.is_empty()
    }

    fn remove_sorted(
        list: &mut Vec<Arc<BatchEntry>>,
        old: &Arc<BatchEntry>,
        key: fn(&BatchEntry) -> (i64, &str),
    ) {
        if let Ok(i) = list.binary_search_by(|e| key(e).cmp(&key(old))) {
            list.remove(i);
        }
    }

    fn insert_sorted(
        list: &mut Vec<Arc<BatchEntry>>,
        e: &Arc<BatchEntry>,
        key: fn(&BatchEntry) -> (i64, &str),
    ) {
        let i = list.partition_point(|x| key(x) < key(e));
        list.insert(i, e.clone());
    }

    /// Replaces (or adds) the batch `pk`; `None` removes it.
    pub fn put(&mut self, pk: i64, entry: Option<BatchEntry>) {
        if let Some(old) = self.by_pk.remove(&pk) {
            Self::remove_sorted(&mut self.by_created, &old, BatchEntry::created_key);
            Self::remove_sorted(&mut self.by_count, &old, BatchEntry::count_key);
        }
        if let Some(e) = entry {
            let e = Arc::new(e);
            Self::insert_sorted(&mut self.by_created, &e, BatchEntry::created_key);
            Self::insert_sorted(&mut self.by_count, &e, BatchEntry::count_key);
            self.by_pk.insert(pk, e);
        }
    }

    pub fn query(&self, p: &ListBatchTasksParams) -> ViewPage {
        let list = match p.sort {
            SortField::CreatedAt => &self.by_created,
            SortField::TaskCount => &self.by_count,
        };
        let (skip, take) = match p.paging {
            Some(pg) => (
                usize::try_from(pg.offset()).unwrap_or(usize::MAX),
                pg.page_size as usize,
            ),
            None => (0, usize::MAX),
        };
        let ordered: Box<dyn Iterator<Item = &Arc<BatchEntry>>> = match p.order {
            SortOrder::Asc => Box::new(list.iter()),
            SortOrder::Desc => Box::new(list.iter().rev()),
        };
        let unfiltered = p.task_states.is_empty()
            && p.video_groups.is_empty()
            && p.name_like.is_none()
            && p.manufacturers.is_empty()
            && p.titles.is_empty();
        if unfiltered {
            return ViewPage {
                count: list.len() as u64,
                rows: ordered
                    .skip(skip)
                    .take(take)
                    .map(|e| e.row.clone())
                    .collect(),
            };
        }
        let filter = Filter::new(p);
        let mut count = 0u64;
        let mut rows = Vec::new();
        for e in ordered {
            if filter.matches(e) {
                if count as usize >= skip && rows.len() < take {
                    rows.push(e.row.clone());
                }
                count += 1;
            }
        }
        ViewPage { count, rows }
    }
}

/// The list filters, prepared once per query.
struct Filter<'a> {
    states: u32,
    groups: Option<HashSet<&'a str>>,
    name: Option<(NameField, &'a str)>,
    manufacturers: &'a [String],
    titles: &'a [String],
}

impl<'a> Filter<'a> {
    fn new(p: &'a ListBatchTasksParams) -> Filter<'a> {
        Filter {
            states: p.task_states.iter().fold(0, |m, s| m | (1 << s.index())),
            groups: (!p.video_groups.is_empty())
                .then(|| p.video_groups.iter().map(String::as_str).collect()),
            name: p.name_like.as_ref().map(|n| (n.field, n.needle.as_str())),
            manufacturers: &p.manufacturers,
            titles: &p.titles,
        }
    }

    fn matches(&self, e: &BatchEntry) -> bool {
        (self.states == 0 || e.state_mask() & self.states != 0)
            && (self.manufacturers.is_empty()
                || self.manufacturers.iter().any(|m| *m == e.row.company))
            && (self.titles.is_empty() || self.titles.iter().any(|t| *t == e.row.alg_name))
            && self.groups.as_ref().is_none_or(|g| {
                e.groups
                    .iter()
                    .any(|(_, id, name)| g.contains(id.as_str()) || g.contains(name.as_str()))
            })
            && self.name.is_none_or(|(field, needle)| match field {
                NameField::BatchTaskName => e.name_lc.contains(needle),
                NameField::PublishServiceName => e.service_name_lc.contains(needle),
            })
    }
}

/// Every loaded project's view. Views are behind a std `RwLock`: list calls
/// hold it only while they pick rows, never across an await.
#[derive(Default)]
pub struct ReadModel {
    views: RwLock<HashMap<i64, Arc<RwLock<ProjectView>>>>,
    /// Serializes loads and refreshes, so a refresh that read the database
    /// later is also applied later, and a load never hides a newer write.
    pub refresh: tokio::sync::Mutex<()>,
}

impl ReadModel {
    pub fn view(&self, project_pk: i64) -> Option<Arc<RwLock<ProjectView>>> {
        self.views.read().ok()?.get(&project_pk).cloned()
    }

    pub fn install(&self, project_pk: i64, view: ProjectView) -> Arc<RwLock<ProjectView>> {
        let v = Arc::new(RwLock::new(view));
        if let Ok(mut m) = self.views.write() {
            m.insert(project_pk, v.clone());
        }
        v
    }

    pub fn is_loaded(&self, project_pk: i64) -> bool {
        self.views
            .read()
            .map(|m| m.contains_key(&project_pk))
            .unwrap_or(false)
    }

    /// Forgets a project; the next list call reloads it.
    pub fn forget(&self, project_pk: i64) {
        if let Ok(mut m) = self.views.write() {
            m.remove(&project_pk);
        }
    }

    /// Forgets every project (after a gap in the change feed).
    pub fn forget_all(&self) {
        if let Ok(mut m) = self.views.write() {
            m.clear();
        }
    }

    pub fn apply(&self, project_pk: i64, changes: Vec<(i64, Option<BatchEntry>)>) {
        if let Some(v) = self.view(project_pk) {
            if let Ok(mut view) = v.write() {
                for (pk, e) in changes {
                    view.put(pk, e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TaskState;

    fn entry(pk: i64, created: i64, tasks: &[(TaskState, i64)], name: &str) -> BatchEntry {
        let mut counters = [0i64; 18];
        for (s, n) in tasks {
            counters[s.index()] += n;
        }
        BatchEntry {
            pk,
            row: Arc::new(BatchTaskRow {
                id: format!("{pk:032x}"),
                name: name.into(),
                video_source_name: None,
                video_group_name: Some("g".into()),
                alg_name: "A".into(),
                company: "C".into(),
                task_type: "0".into(),
                priority: "low".into(),
                num_task: counters.iter().sum(),
                created_at: created,
                counters,
            }),
            name_lc: name.to_lowercase(),
            service_name_lc: "svc".into(),
            groups: vec![(1, "g1".into(), "gate".into())],
        }
    }

    fn ids(p: &ViewPage) -> Vec<i64> {
        p.rows
            .iter()
            .map(|r| i64::from_str_radix(&r.id, 16).unwrap())
            .collect()
    }

    #[test]
    fn sorted_views_follow_updates() {
        use TaskState::*;
        let mut v = ProjectView::new(vec![
            entry(1, 10, &[(Running, 3)], "a"),
            entry(2, 20, &[(Pending, 1)], "b"),
            entry(3, 20, &[], "c"),
        ]);
        let q = ListBatchTasksParams::default();
        assert_eq!(ids(&v.query(&q)), vec![3, 2, 1]);
        let by_count = ListBatchTasksParams {
            sort: SortField::TaskCount,
            order: SortOrder::Asc,
            ..q.clone()
        };
        assert_eq!(ids(&v.query(&by_count)), vec![3, 2, 1]);
        v.put(3, Some(entry(3, 20, &[(Stopped, 5)], "c")));
        assert_eq!(ids(&v.query(&by_count)), vec![2, 1, 3]);
        v.put(1, None);
        assert_eq!(v.query(&q).count, 2);
        let running = ListBatchTasksParams {
            task_states: vec![Running, Stopped],
            ..q.clone()
        };
        assert_eq!(ids(&v.query(&running)), vec![3]);
        let paged = ListBatchTasksParams {
            paging: Some(crate::domain::Paging {
                page_num: 2,
                page_size: 1,
            }),
            ..q
        };
        let p = v.query(&paged);
        assert_eq!((p.count, ids(&p)), (2, vec![2]));
    }
}
