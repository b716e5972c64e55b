//! Synthetic datasets in the dump format, for benchmarks: ten projects of
//! skewed sizes whose names, groups, vendors, titles and states are drawn so
//! that each list filter selects between about 0.1% and 30% of batches.
//! Deterministic for a given seed.

use crate::domain::dump::*;
use crate::domain::TaskState;
use std::io::Write;

/// SplitMix64: small, fast, and good enough to shape test data.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Index into `weights`, chosen with probability proportional to weight.
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut x = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// Zipf-like weights 1/(k+1), scaled to integers.
fn zipf(n: usize) -> Vec<u64> {
    (0..n).map(|k| 1_000_000 / (k as u64 + 1)).collect()
}

pub const VENDORS: [&str; 8] = [
    "Acme",
    "华为云",
    "Vision-Labs",
    "Orbit",
    "Nimbus",
    "Kestrel",
    "Delta.AI",
    "Sentinel",
];
pub const TITLES: [&str; 12] = [
    "Helmet",
    "烟火检测",
    "Intrusion",
    "Crowd",
    "Loitering",
    "Vehicle",
    "Plate",
    "Fire",
    "Smoke",
    "Fall",
    "Mask",
    "Parking",
];
const WORDS: [&str; 10] = [
    "gate", "night", "dock", "巡检", "north", "lobby", "ramp", "yard", "east", "zeta",
];

/// Project sizes for a dataset of about `tasks` tasks: project `p0` is the
/// largest (batches = tasks / 100, about 100 tasks each), `p1` has exactly
/// 1,000 batches, the other eight shrink geometrically.
pub fn shape(tasks: u64) -> Vec<(String, u64, u64)> {
    let big = (tasks / 100).max(10);
    let mut v = vec![("p0".to_owned(), big, 100), ("p1".to_owned(), 1000, 10)];
    for k in 2..10u32 {
        v.push((format!("p{k}"), (big >> k).max(5), 20));
    }
    v
}

/// Writes the dataset; returns (records, tasks) written.
pub fn generate(tasks: u64, seed: u64, out: &mut dyn Write) -> std::io::Result<(u64, u64)> {
    let mut rng = Rng::new(seed);
    let (mut nrec, mut ntask) = (0u64, 0u64);
    let mut put = |r: &DumpRecord, out: &mut dyn Write| -> std::io::Result<()> {
        serde_json::to_writer(&mut *out, r)?;
        out.write_all(b"\n")?;
        nrec += 1;
        Ok(())
    };
    let projects = shape(tasks);
    for (pid, _, _) in &projects {
        put(
            &DumpRecord::Project(ProjectRecord {
                id: pid.clone(),
                name: format!("bench {pid}"),
                created_at: Some(1),
            }),
            out,
        )?;
    }
    let vendor_w = zipf(VENDORS.len());
    let title_w = zipf(TITLES.len());
    let state_w: Vec<u64> = TaskState::ALL
        .iter()
        .map(|s| match s {
            TaskState::Running => 300,
            TaskState::Stopped => 150,
            TaskState::Pending => 100,
            TaskState::Succeeded => 100,
            TaskState::Failed => 60,
            TaskState::Scheduling | TaskState::Starting => 40,
            _ => 15,
        })
        .collect();
    for (pid, batches, mean_tasks) in &projects {
        // 24 services: every (vendor, title) drawn with skew.
        let mut services = Vec::new();
        for i in 0..24 {
            let company = VENDORS[rng.weighted(&vendor_w)];
            let alg = TITLES[rng.weighted(&title_w)];
            let name = format!("{}.{i}", alg_slug(alg));
            put(
                &DumpRecord::Service(ServiceRecord {
                    project_id: pid.clone(),
                    id: Some(format!("svc{i}")),
                    service_name: name.clone(),
                    service_version: "1.0.0".into(),
                    alg_name: alg.into(),
                    company: company.into(),
                    deploy_type: if i % 5 == 0 {
                        "edge".into()
                    } else {
                        "cloud".into()
                    },
                    deployed: Some(true),
                    created_at: Some(1),
                    ..Default::default()
                }),
                out,
            )?;
            services.push(name);
        }
        let ngroups = 200usize;
        let per_group = (*mean_tasks as usize * 2).max(4);
        for g in 0..ngroups {
            let name = if g % 2 == 0 {
                format!("zone-{g}")
            } else {
                format!("区域-{g}")
            };
            put(
                &DumpRecord::VideoGroup(VideoGroupRecord {
                    project_id: pid.clone(),
                    id: format!("g{g}"),
                    name,
                    created_at: Some(1),
                    ..Default::default()
                }),
                out,
            )?;
        }
        for g in 0..ngroups {
            for s in 0..per_group {
                put(
                    &DumpRecord::VideoSource(VideoSourceRecord {
                        project_id: pid.clone(),
                        id: format!("s{g}-{s}"),
                        name: format!("cam-{g}-{s}"),
                        url: format!("rtsp://10.{}.{}.{}/live", g / 250, g % 250, s % 250),
                        group_ids: vec![format!("g{g}")],
                        created_at: Some(1),
                        deleted: false,
                        ..Default::default()
                    }),
                    out,
                )?;
            }
        }
        let group_w = zipf(ngroups);
        let service_w = zipf(services.len());
        let word_w = zipf(WORDS.len());
        let mut created = 1_685_000_000_000i64;
        for b in 0..*batches {
            created += 1 + rng.below(60_000) as i64 * i64::from(rng.below(10) != 0);
            let ng = 1 + rng.below(3) as usize;
            let mut groups: Vec<usize> = Vec::new();
            while groups.len() < ng {
                let g = rng.weighted(&group_w);
                if !groups.contains(&g) {
                    groups.push(g);
                }
            }
            let n = (1 + rng.below(2 * mean_tasks - 1)) as usize;
            let dominant = rng.weighted(&state_w);
            let second = rng.weighted(&state_w);
            let mut task_list = Vec::with_capacity(n);
            for t in 0..n.min(groups.len() * per_group) {
                let g = groups[t % groups.len()];
                let s = t / groups.len();
                let roll = rng.below(100);
                let st = if roll < 85 {
                    dominant
                } else if roll < 97 {
                    second
                } else {
                    rng.weighted(&state_w)
                };
                task_list.push(TaskRecord {
                    id: format!("t{b}-{t}"),
                    video_source_id: format!("s{g}-{s}"),
                    state: TaskState::ALL[st].as_str().into(),
                    created_at: Some(created),
                    updated_at: Some(created),
                    ..Default::default()
                });
            }
            ntask += task_list.len() as u64;
            let word = WORDS[rng.weighted(&word_w)];
            put(
                &DumpRecord::BatchTask(BatchTaskRecord {
                    project_id: pid.clone(),
                    id: format!("{:016x}{:016x}", rng.next_u64(), b),
                    name: format!("{word}-{b}"),
                    description: None,
                    service_name: services[rng.weighted(&service_w)].clone(),
                    service_version: "1.0.0".into(),
                    priority: ["low", "medium", "high"][rng.below(3) as usize].into(),
                    created_at: created,
                    group_ids: groups.iter().map(|g| format!("g{g}")).collect(),
                    config: None,
                    output: None,
                    tasks: task_list,
                    ..Default::default()
                }),
                out,
            )?;
        }
    }
    Ok((nrec, ntask))
}

fn alg_slug(alg: &str) -> String {
    let s: String = alg
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    if s.len() >= 3 {
        s
    } else {
        "alg".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_valid_records_deterministically() {
        let mut a = Vec::new();
        let (recs, tasks) = generate(2_000, 7, &mut a).unwrap();
        let mut b = Vec::new();
        generate(2_000, 7, &mut b).unwrap();
        assert_eq!(a, b);
        assert!(tasks > 1_000, "{tasks}");
        let text = String::from_utf8(a).unwrap();
        assert_eq!(text.lines().count() as u64, recs);
        let mut batches = 0;
        for l in text.lines() {
            if let DumpRecord::BatchTask(bt) = serde_json::from_str::<DumpRecord>(l).unwrap() {
                crate::domain::field::check_batch_id("id", &bt.id).unwrap();
                crate::domain::field::check_batch_name("name", &bt.name).unwrap();
                batches += 1;
            }
        }
        assert!(batches >= 1000 + 20);
    }
}
