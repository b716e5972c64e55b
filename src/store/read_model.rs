//! The in-memory read model behind `GET /v2/{project_id}/batch-tasks`: per
//! project, every batch row with its counters, kept in both sort orders, so
//! a list call touches no database. The database stays the source of truth:
//! a view is loaded from it on first use, refreshed from it after every
//! local write (before the write returns), and from the change feed for
//! writes made by other processes.
//!
//! Filters never scan the project. Every filterable value (task state,
//! vendor, title, service, video group) keeps a sorted posting list of the
//! batches that have it; batch names live in one text searched at once. A
//! filtered query ORs the posting lists of each parameter's wanted values
//! into a bitset over batches, ANDs the parameters' bitsets, takes the
//! count from the bitset's population, and walks the sort order only until
//! the page is full.

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

/// A place in one sort order: the sort key and the entry index.
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: i64,
    idx: u32,
}

/// The filterable values of one entry, as interned numbers: what its
/// posting lists hold it under.
#[derive(Debug, Clone, Default)]
struct Keys {
    states: u32,
    company: u32,
    title: u32,
    service: u32,
    groups: Vec<u32>,
}

/// A set of entry indexes.
#[derive(Debug, Clone)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Bits {
        Bits(vec![0; len.div_ceil(64)])
    }

    fn set(&mut self, i: u32) {
        if let Some(w) = self.0.get_mut(i as usize / 64) {
            *w |= 1 << (i % 64);
        }
    }

    fn get(&self, i: u32) -> bool {
        self.0
            .get(i as usize / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn and(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= b;
        }
    }

    fn count(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

/// Sorted entry indexes per value.
#[derive(Debug, Default)]
struct Postings(HashMap<u32, Vec<u32>>);

impl Postings {
    fn add(&mut self, key: u32, idx: u32) {
        let list = self.0.entry(key).or_default();
        if let Err(at) = list.binary_search(&idx) {
            list.insert(at, idx);
        }
    }

    fn remove(&mut self, key: u32, idx: u32) {
        if let Some(list) = self.0.get_mut(&key) {
            if let Ok(at) = list.binary_search(&idx) {
                list.remove(at);
            }
            if list.is_empty() {
                self.0.remove(&key);
            }
        }
    }

    /// The entries holding any of `keys`.
    fn union(&self, keys: impl IntoIterator<Item = u32>, len: usize) -> Bits {
        let mut b = Bits::new(len);
        for k in keys {
            for i in self.0.get(&k).into_iter().flatten() {
                b.set(*i);
            }
        }
        b
    }
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

    /// The entry indexes whose name contains `needle`.
    fn matches(&self, needle: &str, len: usize) -> Bits {
        let mut out = Bits::new(len);
        if needle.contains('\n') || needle.is_empty() {
            return out;
        }
        let mut next_start = 0usize;
        for at in memchr::memmem::find_iter(self.text.as_bytes(), needle.as_bytes()) {
            // Matches come in text order: skip those inside a name already
            // marked without another search.
            if at < next_start {
                continue;
            }
            let idx = self.starts.partition_point(|s| (*s as usize) <= at) - 1;
            out.set(idx as u32);
            next_start = self.starts.get(idx + 1).map_or(usize::MAX, |s| *s as usize);
        }
        out
    }
}

/// Versions of project views: every view and every change to one takes the
/// next, so a version names one state of one view in this process.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// One project's batches.
#[derive(Debug, Default)]
pub struct ProjectView {
    /// This state's version (see `BatchTaskPage::generation`).
    generation: u64,
    entries: Vec<Option<(Arc<BatchEntry>, Keys)>>,
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
    /// Posting lists: bit `i` of `Keys::states` is key `i`.
    by_state: Postings,
    by_company: Postings,
    by_title: Postings,
    by_service: Postings,
    by_group: Postings,
}

impl ProjectView {
    pub fn new(entries: Vec<BatchEntry>) -> ProjectView {
        let mut v = ProjectView {
            generation: next_generation(),
            ..ProjectView::default()
        };
        for e in entries {
            let idx = v.entries.len() as u32;
            v.by_pk.insert(e.pk, idx);
            let keys = v.keys(&e);
            v.post(&keys, idx, true);
            v.by_created.push(Slot {
                key: e.row.created_at,
                idx,
            });
            v.by_count.push(Slot {
                key: e.row.num_task,
                idx,
            });
            v.entries.push(Some((Arc::new(e), keys)));
        }
        let entries = &v.entries;
        let id = |s: &Slot| {
            entries[s.idx as usize]
                .as_ref()
                .map(|(e, _)| e.row.id.clone())
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
        self.strings.insert(s.to_owned(), i);
        i
    }

    fn service(&mut self, name_lc: &str) -> u32 {
        if let Some(i) = self.service_of_name.get(name_lc) {
            return *i;
        }
        let i = self.service_names.len() as u32;
        self.service_names.push(name_lc.to_owned());
        self.service_of_name.insert(name_lc.to_owned(), i);
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

    fn keys(&mut self, e: &BatchEntry) -> Keys {
        let mut groups: Vec<u32> = e.groups.iter().map(|g| self.group(g)).collect();
        groups.sort_unstable();
        groups.dedup();
        let states =
            e.row
                .counters
                .iter()
                .enumerate()
                .fold(0u32, |m, (i, n)| if *n > 0 { m | (1 << i) } else { m });
        Keys {
            states,
            company: self.intern(&e.row.company),
            title: self.intern(&e.row.alg_name),
            service: self.service(&e.service_name_lc),
            groups,
        }
    }

    /// Adds (or removes) entry `idx` to (from) the posting lists of `keys`.
    fn post(&mut self, keys: &Keys, idx: u32, add: bool) {
        let op = if add { Postings::add } else { Postings::remove };
        for s in 0..32 {
            if keys.states & (1 << s) != 0 {
                op(&mut self.by_state, s, idx);
            }
        }
        op(&mut self.by_company, keys.company, idx);
        op(&mut self.by_title, keys.title, idx);
        op(&mut self.by_service, keys.service, idx);
        for g in &keys.groups {
            op(&mut self.by_group, *g, idx);
        }
    }

    fn id_of(&self, s: &Slot) -> &str {
        self.entries[s.idx as usize]
            .as_ref()
            .map(|(e, _)| e.row.id.as_str())
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
                .map(|e| e.as_ref().map_or(blank, |(e, _)| e.name_lc.as_str())),
        );
    }

    /// Replaces (or adds) the batch `pk`; `None` removes it.
    pub fn put(&mut self, pk: i64, entry: Option<BatchEntry>) {
        self.generation = next_generation();
        let mut names_changed = false;
        let reuse = self.by_pk.get(&pk).copied();
        if let Some(idx) = reuse {
            if let Some((old, keys)) = self.entries[idx as usize].clone() {
                if let Ok(i) = self.position(&self.by_created, old.row.created_at, &old.row.id) {
                    self.by_created.remove(i);
                }
                if let Ok(i) = self.position(&self.by_count, old.row.num_task, &old.row.id) {
                    self.by_count.remove(i);
                }
                self.post(&keys, idx, false);
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
                let keys = self.keys(&e);
                self.post(&keys, idx, true);
                let (created, count, id) = (e.row.created_at, e.row.num_task, e.row.id.clone());
                self.entries[idx as usize] = Some((Arc::new(e), keys));
                self.by_pk.insert(pk, idx);
                let i = self
                    .position(&self.by_created, created, &id)
                    .unwrap_or_else(|i| i);
                self.by_created.insert(i, Slot { key: created, idx });
                let i = self
                    .position(&self.by_count, count, &id)
                    .unwrap_or_else(|i| i);
                self.by_count.insert(i, Slot { key: count, idx });
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
        let row = |s: &Slot| {
            self.entries[s.idx as usize]
                .as_ref()
                .map(|(e, _)| e.row.clone())
        };
        let in_order = |f: &mut dyn FnMut(&Slot) -> bool| match p.order {
            SortOrder::Asc => list.iter().take_while(|s| f(s)).for_each(drop),
            SortOrder::Desc => list.iter().rev().take_while(|s| f(s)).for_each(drop),
        };
        let Some(matching) = self.matching(p) else {
            // Unfiltered: the page is a slice of the order.
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
                generation: self.generation,
            };
        };
        let count = matching.count();
        let mut rows = Vec::new();
        if (skip as u64) < count {
            let want = take.min(count as usize - skip);
            let mut seen = 0usize;
            in_order(&mut |s| {
                if matching.get(s.idx) {
                    if seen >= skip {
                        if let Some(r) = row(s) {
                            rows.push(r);
                        }
                    }
                    seen += 1;
                }
                rows.len() < want
            });
        }
        BatchTaskPage {
            count,
            rows,
            generation: self.generation,
        }
    }

    /// The entries every filter of `p` admits; `None` without filters.
    fn matching(&self, p: &ListBatchTasksParams) -> Option<Bits> {
        let len = self.entries.len();
        let mut acc: Option<Bits> = None;
        let mut narrow = |b: Bits| match &mut acc {
            Some(a) => a.and(&b),
            None => acc = Some(b),
        };
        if !p.task_states.is_empty() {
            narrow(
                self.by_state
                    .union(p.task_states.iter().map(|s| s.index() as u32), len),
            );
        }
        let interned = |items: &[String]| -> Vec<u32> {
            items
                .iter()
                .filter_map(|s| self.strings.get(s).copied())
                .collect()
        };
        if !p.manufacturers.is_empty() {
            narrow(self.by_company.union(interned(&p.manufacturers), len));
        }
        if !p.titles.is_empty() {
            narrow(self.by_title.union(interned(&p.titles), len));
        }
        if !p.video_groups.is_empty() {
            let wanted = self
                .groups
                .iter()
                .enumerate()
                .filter(|(_, (_, id, name))| p.video_groups.iter().any(|g| g == id || g == name))
                .map(|(i, _)| i as u32);
            narrow(self.by_group.union(wanted, len));
        }
        match &p.name_like {
            Some(n) if n.field == NameField::BatchTaskName => {
                narrow(self.names.matches(&n.needle, len));
            }
            Some(n) => {
                let wanted = self
                    .service_names
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.contains(n.needle.as_str()))
                    .map(|(i, _)| i as u32);
                narrow(self.by_service.union(wanted, len));
            }
            None => {}
        }
        acc
    }
}

/// Every loaded project's view. Views are behind a std `RwLock`: list calls
/// hold it only while they pick rows, never across an await.
#[derive(Debug, Default)]
pub struct ReadModel {
    views: RwLock<HashMap<i64, Arc<RwLock<ProjectView>>>>,
    /// Serializes loads and refreshes, so a refresh that read the database
    /// later is also applied later, and a load never hides a newer write.
    pub refresh: tokio::sync::Mutex<()>,
    /// Woken on every change to a project's view (and when it is dropped),
    /// for the list's long polls.
    changes: std::sync::Mutex<HashMap<i64, Arc<tokio::sync::Notify>>>,
}

impl ReadModel {
    /// What a long poll on project `project_pk`'s list waits on: notified
    /// after every change to the project's view.
    pub fn changes(&self, project_pk: i64) -> Option<Arc<tokio::sync::Notify>> {
        let mut m = self.changes.lock().ok()?;
        Some(m.entry(project_pk).or_default().clone())
    }

    fn changed(&self, project_pk: Option<i64>) {
        if let Ok(m) = self.changes.lock() {
            match project_pk {
                Some(pk) => {
                    if let Some(n) = m.get(&pk) {
                        n.notify_waiters();
                    }
                }
                None => m.values().for_each(|n| n.notify_waiters()),
            }
        }
    }

    pub fn view(&self, project_pk: i64) -> Option<Arc<RwLock<ProjectView>>> {
        self.views.read().ok()?.get(&project_pk).cloned()
    }

    pub fn install(&self, project_pk: i64, view: ProjectView) -> Arc<RwLock<ProjectView>> {
        let v = Arc::new(RwLock::new(view));
        if let Ok(mut m) = self.views.write() {
            m.insert(project_pk, v.clone());
        }
        self.changed(Some(project_pk));
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
        self.changed(Some(project_pk));
    }

    /// Forgets every project (after a gap in the change feed).
    pub fn forget_all(&self) {
        if let Ok(mut m) = self.views.write() {
            m.clear();
        }
        self.changed(None);
    }

    pub fn apply(&self, project_pk: i64, changes: Vec<(i64, Option<BatchEntry>)>) {
        if let Some(v) = self.view(project_pk) {
            if let Ok(mut view) = v.write() {
                for (pk, e) in changes {
                    view.put(pk, e);
                }
            }
            self.changed(Some(project_pk));
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
                service_name: "s".into(),
                service_version: "1.0".into(),
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
