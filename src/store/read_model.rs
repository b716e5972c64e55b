//! The in-memory read model behind `GET /v2/{project_id}/batch-tasks`: per
//! project, every batch row with its counters, kept in both sort orders, so
//! a list call touches no database. The database stays the source of truth:
//! a view is loaded from it on first use, refreshed from it after every
//! local write (before the write returns), and from the change feed for
//! writes made by other processes.
//!
//! Layout is chosen for the filter pass: each sort order is a contiguous
//! array of small `Slot`s holding everything the non-text filters need
//! (state bits, interned vendor, title and group numbers), so a filtered
//! query is one linear scan with no pointer chasing; `name_like` searches a
//! single text of all names at once.

use super::{BatchTaskPage, BatchTaskRow};
use crate::domain::{ListBatchTasksParams, NameField, SortField, SortOrder};
use std::collections::HashMap;
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

const NO_GROUP: u32 = u32::MAX;
const INLINE_GROUPS: usize = 3;

/// What the filters read, inline in the sorted arrays.
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: i64,
    idx: u32,
    states: u32,
    company: u32,
    title: u32,
    /// Interned lowercased service name (a project has few services, so
    /// `publish_service_name` is matched once per service, not per batch).
    service: u32,
    groups: [u32; INLINE_GROUPS],
    /// Bit `g % 64` for each of the batch's groups `g`: a slot whose bits
    /// miss every wanted group's bit is rejected without looking further.
    group_bits: u64,
    /// More groups than fit inline: read them from the entry.
    more_groups: bool,
}

/// All names of one field, lowercased, one per entry index, joined by
/// newlines (which no name contains), searched with one substring scan.
#[derive(Debug, Default)]
struct NameText {
    text: String,
    starts: Vec<u32>,
}

impl NameText {
    fn build<'a>(names: impl Iterator<Item = &'a str>) -> NameText {
        let mut t = NameText::default();
        for n in names {
            t.starts.push(t.text.len() as u32);
            t.text.push_str(n);
            t.text.push('\n');
        }
        t
    }

    /// Marks the entry indexes whose name contains `needle`; returns how
    /// many it marked.
    fn matches(&self, needle: &str, out: &mut [bool]) -> u64 {
        if needle.contains('\n') || needle.is_empty() {
            return 0;
        }
        let mut last = usize::MAX;
        let mut marked = 0;
        for at in memchr::memmem::find_iter(self.text.as_bytes(), needle.as_bytes()) {
            let idx = self.starts.partition_point(|s| (*s as usize) <= at) - 1;
            if idx != last {
                if let Some(o) = out.get_mut(idx) {
                    if !*o {
                        marked += 1;
                    }
                    *o = true;
                }
                last = idx;
            }
        }
        marked
    }
}

/// One project's batches.
#[derive(Debug, Default)]
pub struct ProjectView {
    entries: Vec<Option<Arc<BatchEntry>>>,
    free: Vec<u32>,
    by_pk: HashMap<i64, u32>,
    by_created: Vec<Slot>,
    by_count: Vec<Slot>,
    strings: HashMap<String, u32>,
    groups: Vec<(i64, String, String)>,
    group_of_pk: HashMap<i64, u32>,
    names: NameText,
    /// Lowercased service names, by interned number.
    service_names: Vec<String>,
    service_of_name: HashMap<String, u32>,
}

impl ProjectView {
    pub fn new(entries: Vec<BatchEntry>) -> ProjectView {
        let mut v = ProjectView::default();
        for e in entries {
            let idx = v.entries.len() as u32;
            v.by_pk.insert(e.pk, idx);
            let (a, b) = v.slots(&e, idx);
            v.by_created.push(a);
            v.by_count.push(b);
            v.entries.push(Some(Arc::new(e)));
        }
        let entries = &v.entries;
        let id = |s: &Slot| {
            entries[s.idx as usize]
                .as_ref()
                .map(|e| e.row.id.clone())
                .unwrap_or_default()
        };
        v.by_created.sort_by_cached_key(|s| (s.key, id(s)));
        v.by_count.sort_by_cached_key(|s| (s.key, id(s)));
        v.rebuild_names();
        v
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(i) = self.strings.get(s) {
            return *i;
        }
        let i = self.strings.len() as u32;
        self.strings.insert(s.to_string(), i);
        i
    }

    fn service(&mut self, name_lc: &str) -> u32 {
        if let Some(i) = self.service_of_name.get(name_lc) {
            return *i;
        }
        let i = self.service_names.len() as u32;
        self.service_names.push(name_lc.to_string());
        self.service_of_name.insert(name_lc.to_string(), i);
        i
    }

    fn group(&mut self, g: &(i64, String, String)) -> u32 {
        match self.group_of_pk.get(&g.0) {
            Some(i) => {
                // Names can change; the latest refresh wins.
                self.groups[*i as usize] = g.clone();
                *i
            }
            None => {
                let i = self.groups.len() as u32;
                self.groups.push(g.clone());
                self.group_of_pk.insert(g.0, i);
                i
            }
        }
    }

    /// The two slots (created order, count order) of an entry.
    fn slots(&mut self, e: &BatchEntry, idx: u32) -> (Slot, Slot) {
        let mut groups = [NO_GROUP; INLINE_GROUPS];
        let mut group_bits = 0u64;
        for (i, g) in e.groups.iter().enumerate() {
            let gi = self.group(g);
            group_bits |= 1 << (gi % 64);
            if let Some(slot) = groups.get_mut(i) {
                *slot = gi;
            }
        }
        let states =
            e.row
                .counters
                .iter()
                .enumerate()
                .fold(0u32, |m, (i, n)| if *n > 0 { m | (1 << i) } else { m });
        let base = Slot {
            key: e.row.created_at,
            idx,
            states,
            company: self.intern(&e.row.company),
            title: self.intern(&e.row.alg_name),
            service: self.service(&e.service_name_lc),
            groups,
            group_bits,
            more_groups: e.groups.len() > INLINE_GROUPS,
        };
        (
            base,
            Slot {
                key: e.row.num_task,
                ..base
            },
        )
    }

    fn id_of(&self, s: &Slot) -> &str {
        self.entries[s.idx as usize]
            .as_ref()
            .map(|e| e.row.id.as_str())
            .unwrap_or("")
    }

    fn position(&self, list: &[Slot], key: i64, id: &str) -> Result<usize, usize> {
        list.binary_search_by(|s| (s.key, self.id_of(s)).cmp(&(key, id)))
    }

    fn rebuild_names(&mut self) {
        let blank = "";
        self.names = NameText::build(
            self.entries
                .iter()
                .map(|e| e.as_ref().map_or(blank, |e| e.name_lc.as_str())),
        );
    }

    /// Replaces (or adds) the batch `pk`; `None` removes it.
    pub fn put(&mut self, pk: i64, entry: Option<BatchEntry>) {
        let mut names_changed = false;
        let reuse = self.by_pk.get(&pk).copied();
        if let Some(idx) = reuse {
            if let Some(old) = self.entries[idx as usize].clone() {
                if let Ok(i) = self.position(&self.by_created, old.row.created_at, &old.row.id) {
                    self.by_created.remove(i);
                }
                if let Ok(i) = self.position(&self.by_count, old.row.num_task, &old.row.id) {
                    self.by_count.remove(i);
                }
                names_changed = entry.as_ref().is_none_or(|e| e.name_lc != old.name_lc);
            }
        }
        match entry {
            Some(e) => {
                let idx = match reuse {
                    Some(i) => i,
                    None => {
                        names_changed = true;
                        match self.free.pop() {
                            Some(i) => i,
                            None => {
                                self.entries.push(None);
                                (self.entries.len() - 1) as u32
                            }
                        }
                    }
                };
                let (a, b) = self.slots(&e, idx);
                let (created, count, id) = (e.row.created_at, e.row.num_task, e.row.id.clone());
                self.entries[idx as usize] = Some(Arc::new(e));
                self.by_pk.insert(pk, idx);
                let i = self
                    .position(&self.by_created, created, &id)
                    .unwrap_or_else(|i| i);
                self.by_created.insert(i, a);
                let i = self
                    .position(&self.by_count, count, &id)
                    .unwrap_or_else(|i| i);
                self.by_count.insert(i, b);
            }
            None => {
                if let Some(idx) = reuse {
                    self.entries[idx as usize] = None;
                    self.by_pk.remove(&pk);
                    self.free.push(idx);
                }
            }
        }
        if names_changed {
            self.rebuild_names();
        }
    }

    pub fn query(&self, p: &ListBatchTasksParams) -> BatchTaskPage {
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
        let row = |s: &Slot| self.entries[s.idx as usize].as_ref().map(|e| e.row.clone());
        let unfiltered = p.task_states.is_empty()
            && p.video_groups.is_empty()
            && p.name_like.is_none()
            && p.manufacturers.is_empty()
            && p.titles.is_empty();
        if unfiltered {
            let rows = match p.order {
                SortOrder::Asc => list.iter().skip(skip).take(take).filter_map(row).collect(),
                SortOrder::Desc => list
                    .iter()
                    .rev()
                    .skip(skip)
                    .take(take)
                    .filter_map(row)
                    .collect(),
            };
            return BatchTaskPage {
                count: list.len() as u64,
                rows,
            };
        }
        let Some(filter) = self.filter(p) else {
            return BatchTaskPage::default();
        };
        // With the batch name as the only filter, the name search already
        // counted the matches: the walk can stop once the page is full.
        let name_only = p.task_states.is_empty()
            && p.video_groups.is_empty()
            && p.manufacturers.is_empty()
            && p.titles.is_empty()
            && filter.names.is_some();
        let mut count = 0u64;
        let mut rows = Vec::new();
        let slots: Box<dyn Iterator<Item = &Slot>> = match p.order {
            SortOrder::Asc => Box::new(list.iter()),
            SortOrder::Desc => Box::new(list.iter().rev()),
        };
        for s in slots {
            if filter.matches(s, self) {
                if count as usize >= skip && rows.len() < take {
                    if let Some(r) = row(s) {
                        rows.push(r);
                    }
                }
                count += 1;
                if name_only && rows.len() >= take {
                    return BatchTaskPage {
                        count: filter.name_hits,
                        rows,
                    };
                }
            }
        }
        BatchTaskPage { count, rows }
    }

    /// Prepares the filters; `None` when they can match nothing (a vendor,
    /// title or group that no batch has).
    fn filter(&self, p: &ListBatchTasksParams) -> Option<Filter> {
        let ids = |items: &[String]| -> Option<Vec<u32>> {
            if items.is_empty() {
                return Some(Vec::new());
            }
            let v: Vec<u32> = items
                .iter()
                .filter_map(|s| self.strings.get(s).copied())
                .collect();
            (!v.is_empty()).then_some(v)
        };
        let companies = ids(&p.manufacturers)?;
        let titles = ids(&p.titles)?;
        let groups = if p.video_groups.is_empty() {
            None
        } else {
            let wanted: Vec<bool> = self
                .groups
                .iter()
                .map(|(_, id, name)| p.video_groups.iter().any(|g| g == id || g == name))
                .collect();
            if !wanted.iter().any(|w| *w) {
                return None;
            }
            Some(wanted)
        };
        let group_bits = groups.as_ref().map_or(u64::MAX, |w: &Vec<bool>| {
            w.iter()
                .enumerate()
                .filter(|(_, x)| **x)
                .fold(0u64, |m, (i, _)| m | 1 << (i % 64))
        });
        let (mut names, mut services, mut name_hits) = (None, None, 0);
        match &p.name_like {
            Some(n) if n.field == NameField::BatchTaskName => {
                let mut hit = vec![false; self.entries.len()];
                name_hits = self.names.matches(&n.needle, &mut hit);
                names = Some(hit);
            }
            Some(n) => {
                let hit: Vec<bool> = self
                    .service_names
                    .iter()
                    .map(|s| s.contains(n.needle.as_str()))
                    .collect();
                if !hit.iter().any(|h| *h) {
                    return None;
                }
                services = Some(hit);
            }
            None => {}
        }
        Some(Filter {
            states: p.task_states.iter().fold(0, |m, s| m | (1 << s.index())),
            group_bits,
            companies,
            titles,
            groups,
            names,
            name_hits,
            services,
        })
    }
}

struct Filter {
    states: u32,
    /// Union of the wanted groups' bits (all ones without a group filter).
    group_bits: u64,
    companies: Vec<u32>,
    titles: Vec<u32>,
    /// Wanted, by interned group number.
    groups: Option<Vec<bool>>,
    /// Matching name, by entry index.
    names: Option<Vec<bool>>,
    /// How many entries `names` marks.
    name_hits: u64,
    /// Matching service name, by interned number.
    services: Option<Vec<bool>>,
}

impl Filter {
    fn matches(&self, s: &Slot, view: &ProjectView) -> bool {
        (self.states == 0 || s.states & self.states != 0)
            && (s.group_bits & self.group_bits != 0 || s.more_groups || self.groups.is_none())
            && (self.companies.is_empty() || self.companies.contains(&s.company))
            && (self.titles.is_empty() || self.titles.contains(&s.title))
            && self
                .names
                .as_ref()
                .is_none_or(|n| n.get(s.idx as usize).copied().unwrap_or(false))
            && self
                .services
                .as_ref()
                .is_none_or(|n| n.get(s.service as usize).copied().unwrap_or(false))
            && self.groups.as_ref().is_none_or(|wanted| {
                let hit = |g: u32| wanted.get(g as usize).copied().unwrap_or(false);
                if s.groups.iter().any(|g| *g != NO_GROUP && hit(*g)) {
                    return true;
                }
                s.more_groups
                    && view.entries[s.idx as usize].as_ref().is_some_and(|e| {
                        e.groups
                            .iter()
                            .any(|g| view.group_of_pk.get(&g.0).is_some_and(|i| hit(*i)))
                    })
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
    use crate::domain::{NameLike, Paging, TaskState};

    fn entry(
        pk: i64,
        created: i64,
        tasks: &[(TaskState, i64)],
        name: &str,
        groups: &[i64],
    ) -> BatchEntry {
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
                company: if pk % 2 == 0 {
                    "Even".into()
                } else {
                    "Odd".into()
                },
                task_type: "0".into(),
                priority: "low".into(),
                num_task: counters.iter().sum(),
                created_at: created,
                counters,
                rendered: Default::default(),
            }),
            name_lc: name.to_lowercase(),
            service_name_lc: "svc".into(),
            groups: groups
                .iter()
                .map(|g| (*g, format!("g{g}"), format!("group {g}")))
                .collect(),
        }
    }

    fn ids(p: &BatchTaskPage) -> Vec<i64> {
        p.rows
            .iter()
            .map(|r| i64::from_str_radix(&r.id, 16).unwrap())
            .collect()
    }

    #[test]
    fn sorted_views_follow_updates() {
        use TaskState::*;
        let mut v = ProjectView::new(vec![
            entry(1, 10, &[(Running, 3)], "alpha", &[1]),
            entry(2, 20, &[(Pending, 1)], "beta", &[1, 2, 3, 4]),
            entry(3, 20, &[], "gamma", &[2]),
        ]);
        let q = ListBatchTasksParams::default();
        assert_eq!(ids(&v.query(&q)), vec![3, 2, 1]);
        let by_count = ListBatchTasksParams {
            sort: SortField::TaskCount,
            order: SortOrder::Asc,
            ..q.clone()
        };
        assert_eq!(ids(&v.query(&by_count)), vec![3, 2, 1]);
        v.put(3, Some(entry(3, 20, &[(Stopped, 5)], "gamma", &[2])));
        assert_eq!(ids(&v.query(&by_count)), vec![2, 1, 3]);
        v.put(1, None);
        assert_eq!(v.query(&q).count, 2);
        let running = ListBatchTasksParams {
            task_states: vec![Running, Stopped],
            ..q.clone()
        };
        assert_eq!(ids(&v.query(&running)), vec![3]);
        let paged = ListBatchTasksParams {
            paging: Some(Paging {
                page_num: 2,
                page_size: 1,
            }),
            ..q.clone()
        };
        let p = v.query(&paged);
        assert_eq!((p.count, ids(&p)), (2, vec![2]));
        // A fourth group lives outside the inline slots.
        let g4 = ListBatchTasksParams {
            video_groups: vec!["group 4".into()],
            ..q.clone()
        };
        assert_eq!(ids(&v.query(&g4)), vec![2]);
        let odd = ListBatchTasksParams {
            manufacturers: vec!["Odd".into()],
            ..q.clone()
        };
        assert_eq!(ids(&v.query(&odd)), vec![3]);
        let none = ListBatchTasksParams {
            manufacturers: vec!["Nobody".into()],
            ..q.clone()
        };
        assert_eq!(v.query(&none).count, 0);
        // Removed slots are reused; names follow.
        v.put(9, Some(entry(9, 5, &[], "delta", &[])));
        let name = |n: &str| ListBatchTasksParams {
            name_like: Some(NameLike {
                field: NameField::BatchTaskName,
                needle: n.into(),
            }),
            ..q.clone()
        };
        assert_eq!(ids(&v.query(&name("a"))), vec![3, 2, 9]);
        assert_eq!(ids(&v.query(&name("alpha"))), Vec::<i64>::new());
        assert_eq!(ids(&v.query(&name("a\nb"))), Vec::<i64>::new());
        assert_eq!(ids(&v.query(&name("mma"))), vec![3]);
        // A full page stops the walk early; the count still covers every match.
        let first = ListBatchTasksParams {
            paging: Some(Paging {
                page_num: 1,
                page_size: 1,
            }),
            ..name("a")
        };
        let page = v.query(&first);
        assert_eq!((page.count, ids(&page)), (3, vec![3]));
        let second = ListBatchTasksParams {
            paging: Some(Paging {
                page_num: 2,
                page_size: 2,
            }),
            ..name("a")
        };
        let page = v.query(&second);
        assert_eq!((page.count, ids(&page)), (3, vec![9]));
    }
}
