//! A task's weekly schedule (VIAS's TaskSchedule) as windows in time: which
//! instants are inside a window, and when that next changes. The scheduler
//! stops a task at a window's end and starts it again at the next one's
//! beginning; this module only answers the two questions.
//!
//! Time zones are fixed offsets (`timezone`, `±HH:MM`): days of the week and
//! window times are read on the clock of that offset, with no daylight
//! saving. A window `{begin_at, end_at}` (`hh:mm:ss`) holds from `begin_at`
//! inclusive to `end_at` exclusive; `end_at` may be `24:00:00`, and must come
//! after `begin_at` (a window past midnight is two windows, one per day).
//! `periods` holds either one list of windows for every listed day, or one
//! list per entry of `days_of_week`, in the same order; no `periods` means
//! the whole of each listed day.

use super::FieldError;
use serde_json::Value;

const DAY_S: i64 = 86_400;
/// A task's next look at its windows when there is nothing to look for
/// (at rest, not held): never, until something moves it again.
pub const PARKED: i64 = i64::MAX;
/// Windows of one day: `[begin, end)` in seconds since local midnight.
type Day = Vec<(i64, i64)>;

/// A validated weekly schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The zone's offset east of UTC, in seconds.
    offset_s: i64,
    /// Monday first; an empty day is not a run day.
    days: [Day; 7],
}

fn err(param: &str, detail: &str) -> FieldError {
    FieldError::new(format!("schedule.{param}"), detail)
}

/// `±HH:MM` with HH at most 14 (the widest offset in use) → seconds.
fn parse_offset(tz: &str) -> Option<i64> {
    let b = tz.as_bytes();
    if b.len() != 6 || b[3] != b':' {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let h: i64 = tz.get(1..3)?.parse().ok()?;
    let m: i64 = tz.get(4..6)?.parse().ok()?;
    if !tz[1..3]
        .bytes()
        .chain(tz[4..6].bytes())
        .all(|c| c.is_ascii_digit())
        || h > 14
        || m > 59
        || (h == 14 && m > 0)
    {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// `hh:mm:ss` → seconds since midnight; `24:00:00` only when `end`.
fn parse_clock(s: &str, end: bool) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let part = |r: std::ops::Range<usize>| -> Option<i64> {
        let p = s.get(r)?;
        p.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| p.parse().ok())?
    };
    let (h, m, sec) = (part(0..2)?, part(3..5)?, part(6..8)?);
    if (end && (h, m, sec) == (24, 0, 0)) || (h < 24 && m < 60 && sec < 60) {
        Some(h * 3600 + m * 60 + sec)
    } else {
        None
    }
}

fn parse_windows(list: &Value) -> Result<Day, FieldError> {
    const SHAPE: &str =
        "schedule.periods must hold lists of {\"begin_at\":\"hh:mm:ss\",\"end_at\":\"hh:mm:ss\"}";
    let items = list
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| err("periods", SHAPE))?;
    let mut day = Vec::with_capacity(items.len());
    for w in items {
        let at = |k: &str, end: bool| {
            w.get(k)
                .and_then(Value::as_str)
                .and_then(|s| parse_clock(s, end))
                .ok_or_else(|| err("periods", SHAPE))
        };
        let (b, e) = (at("begin_at", false)?, at("end_at", true)?);
        if e <= b {
            return Err(err(
                "periods",
                "schedule.periods: each window's end_at must come after its begin_at",
            ));
        }
        day.push((b, e));
    }
    Ok(day)
}

impl Schedule {
    /// Checks a TaskSchedule as a client sent it (or as it was stored).
    pub fn parse(v: &Value) -> Result<Schedule, FieldError> {
        match v.get("type").and_then(Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case("weekly") => {}
            _ => return Err(err("type", "schedule.type must be weekly")),
        }
        let offset_s = v
            .get("timezone")
            .and_then(Value::as_str)
            .and_then(parse_offset)
            .ok_or_else(|| {
                err(
                    "timezone",
                    "schedule.timezone must be an offset from -14:00 to +14:00, like +08:00",
                )
            })?;
        let days: Vec<usize> = v
            .get("days_of_week")
            .and_then(Value::as_array)
            .filter(|d| !d.is_empty())
            .and_then(|d| {
                d.iter()
                    .map(|x| {
                        x.as_u64()
                            .filter(|n| (1..=7).contains(n))
                            .map(|n| n as usize - 1)
                    })
                    .collect()
            })
            .ok_or_else(|| {
                err(
                    "days_of_week",
                    "schedule.days_of_week must list days 1 (Monday) to 7 (Sunday)",
                )
            })?;
        let periods = match v.get("periods") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(p)) => p.iter().map(parse_windows).collect::<Result<_, _>>()?,
            Some(_) => return Err(err("periods", "schedule.periods must be a list of lists")),
        };
        let for_day = |i: usize| -> Day {
            match periods.len() {
                0 => vec![(0, DAY_S)],
                1 => periods[0].clone(),
                _ => periods[i].clone(),
            }
        };
        if periods.len() > 1 && periods.len() != days.len() {
            return Err(err(
                "periods",
                "schedule.periods must hold one list of windows, or one per entry of days_of_week",
            ));
        }
        let mut week: [Day; 7] = Default::default();
        for (i, d) in days.iter().enumerate() {
            week[*d].extend(for_day(i));
        }
        Ok(Schedule {
            offset_s,
            days: week,
        })
    }

    /// Whether `at_ms` (Unix milliseconds) is inside a window.
    pub fn contains(&self, at_ms: i64) -> bool {
        let local = at_ms.div_euclid(1000) + self.offset_s;
        // 1970-01-01 was a Thursday: Monday-first index 3.
        let day = (local.div_euclid(DAY_S) + 3).rem_euclid(7) as usize;
        let sod = local.rem_euclid(DAY_S);
        self.days[day].iter().any(|(b, e)| *b <= sod && sod < *e)
    }

    /// The first instant after `now_ms` at which [`contains`](Self::contains)
    /// changes; `None` if it never does (every day whole).
    pub fn next_change(&self, now_ms: i64) -> Option<i64> {
        let inside = self.contains(now_ms);
        let local_midnight = (now_ms.div_euclid(1000) + self.offset_s).div_euclid(DAY_S) * DAY_S;
        let mut edges: Vec<i64> = Vec::new();
        for k in 0..=8 {
            let midnight = local_midnight + k * DAY_S;
            let day = (midnight.div_euclid(DAY_S) + 3).rem_euclid(7) as usize;
            for (b, e) in &self.days[day] {
                for s in [b, e] {
                    let at = (midnight + s - self.offset_s) * 1000;
                    if at > now_ms {
                        edges.push(at);
                    }
                }
            }
        }
        edges.sort_unstable();
        edges.into_iter().find(|at| self.contains(*at) != inside)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2026-11-30 00:00:00 UTC, a Monday.
    const MONDAY: i64 = 1_795_996_800_000;
    const H: i64 = 3_600_000;

    fn weekly(tz: &str, days: &[u8], periods: Value) -> Schedule {
        Schedule::parse(
            &json!({"type": "weekly", "timezone": tz, "days_of_week": days, "periods": periods}),
        )
        .unwrap()
    }

    fn window(b: &str, e: &str) -> Value {
        json!({"begin_at": b, "end_at": e})
    }

    #[test]
    fn the_fixed_monday_is_a_monday() {
        let s = weekly("+00:00", &[1], Value::Null);
        assert!(s.contains(MONDAY) && s.contains(MONDAY + 24 * H - 1));
        assert!(!s.contains(MONDAY - 1) && !s.contains(MONDAY + 24 * H));
    }

    #[test]
    fn windows_are_read_on_the_zones_clock() {
        // Monday 09:00–10:00 at +08:00 is Monday 01:00–02:00 UTC.
        let s = weekly("+08:00", &[1], json!([[window("09:00:00", "10:00:00")]]));
        assert!(!s.contains(MONDAY + H - 1));
        assert!(s.contains(MONDAY + H));
        assert!(s.contains(MONDAY + 2 * H - 1));
        assert!(!s.contains(MONDAY + 2 * H));
        assert_eq!(s.next_change(MONDAY), Some(MONDAY + H));
        assert_eq!(s.next_change(MONDAY + H), Some(MONDAY + 2 * H));
        // After the window, the next change is a week later.
        assert_eq!(s.next_change(MONDAY + 2 * H), Some(MONDAY + 7 * 24 * H + H));
        // A negative offset moves the local day: Sunday 23:00 at -05:00 is
        // Monday 04:00 UTC.
        let s = weekly("-05:00", &[7], json!([[window("23:00:00", "24:00:00")]]));
        assert!(s.contains(MONDAY + 4 * H) && !s.contains(MONDAY + 5 * H));
    }

    #[test]
    fn periods_apply_to_every_day_or_one_list_per_day() {
        let every = weekly("+00:00", &[1, 3], json!([[window("08:00:00", "09:00:00")]]));
        assert!(every.contains(MONDAY + 8 * H) && every.contains(MONDAY + 56 * H));
        assert!(!every.contains(MONDAY + 32 * H), "Tuesday is not listed");
        let per_day = weekly(
            "+00:00",
            &[1, 3],
            json!([
                [window("08:00:00", "09:00:00")],
                [window("20:00:00", "21:00:00")]
            ]),
        );
        assert!(per_day.contains(MONDAY + 8 * H) && !per_day.contains(MONDAY + 20 * H));
        assert!(per_day.contains(MONDAY + 68 * H) && !per_day.contains(MONDAY + 56 * H));
    }

    #[test]
    fn adjacent_windows_do_not_flip_and_a_whole_week_never_does() {
        let s = weekly("+00:00", &[1, 2], Value::Null);
        assert_eq!(s.next_change(MONDAY + H), Some(MONDAY + 48 * H));
        let all = weekly("+03:30", &[1, 2, 3, 4, 5, 6, 7], Value::Null);
        assert_eq!(all.next_change(MONDAY), None);
        assert!(all.contains(MONDAY));
    }

    #[test]
    fn bad_schedules_name_their_field() {
        let bad = |v: Value| Schedule::parse(&v).unwrap_err().param;
        let ok = json!({"type": "weekly", "timezone": "+08:00", "days_of_week": [1]});
        assert!(Schedule::parse(&ok).is_ok());
        let with = |k: &str, x: Value| {
            let mut v = ok.clone();
            v[k] = x;
            v
        };
        assert_eq!(bad(with("type", json!("monthly"))), "schedule.type");
        for tz in [
            "08:00", "+8:00", "+15:00", "+08:60", "+0a:00", "", "+08:00 ",
        ] {
            assert_eq!(
                bad(with("timezone", json!(tz))),
                "schedule.timezone",
                "{tz}"
            );
        }
        for d in [json!([]), json!([0]), json!([8]), json!(["1"]), json!(1)] {
            assert_eq!(
                bad(with("days_of_week", d.clone())),
                "schedule.days_of_week",
                "{d}"
            );
        }
        for p in [
            json!([[]]),
            json!({}),
            json!([[window("10:00:00", "09:00:00")]]),
            json!([[window("10:00:00", "10:00:00")]]),
            json!([[window("24:00:00", "24:00:00")]]),
            json!([[window("9:00:00", "10:00:00")]]),
            json!([[window("09:00:00", "10:00:60")]]),
            json!([[{"begin_at": "09:00:00"}]]),
            json!([
                [window("09:00:00", "10:00:00")],
                [window("09:00:00", "10:00:00")]
            ]),
        ] {
            assert_eq!(bad(with("periods", p.clone())), "schedule.periods", "{p}");
        }
    }
}
