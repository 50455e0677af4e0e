//! CPU time per call, per process: user + system time from `/proc` over a
//! measured window, divided by the calls completed in it. The processes are
//! named groups (the two productinfo replicas together, order, storefront,
//! PostgreSQL's server and every backend, the load generator itself), so an
//! optimisation shows where it lands.

use std::collections::BTreeMap;

/// Clock ticks per second in `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// The processes to account, by group name.
#[derive(Debug, Clone)]
pub struct Processes {
    groups: Vec<(String, Vec<u32>)>,
    /// PostgreSQL's postmaster: it and its children (the backends) are
    /// one group, found again at every snapshot.
    postgres: Option<u32>,
}

/// CPU seconds used so far by each process of each group.
#[derive(Debug, Clone, Default)]
pub struct Snapshot(BTreeMap<u32, (String, f64)>);

impl Processes {
    /// `groups` of pids; PostgreSQL's server `postgres` (its children join
    /// it); the generator is this process.
    pub fn new(groups: Vec<(String, Vec<u32>)>, postgres: Option<u32>) -> Self {
        Self { groups, postgres }
    }

    /// Every accounted process's CPU seconds right now.
    pub fn snapshot(&self) -> Snapshot {
        let mut seen = BTreeMap::new();
        let mut add = |group: &str, pid: u32| {
            if let Some(seconds) = cpu_seconds(pid) {
                seen.insert(pid, (group.to_owned(), seconds));
            }
        };
        for (group, pids) in &self.groups {
            for pid in pids {
                add(group, *pid);
            }
        }
        add("generator", std::process::id());
        if let Some(server) = self.postgres {
            add("postgres", server);
            for pid in children(server) {
                add("postgres", pid);
            }
        }
        Snapshot(seen)
    }
}

impl Snapshot {
    /// Microseconds of CPU per call for each group (and `all`), from this
    /// snapshot to `later`, over `calls` calls. A process that started in
    /// between counts whole; one that ended in between is lost (pools keep
    /// their connections, so backends rarely do).
    pub fn per_call(&self, later: &Snapshot, calls: u64) -> BTreeMap<String, f64> {
        let mut used: BTreeMap<String, f64> = BTreeMap::new();
        for (pid, (group, after)) in &later.0 {
            let before = self.0.get(pid).map_or(0.0, |(_, s)| *s);
            *used.entry(group.clone()).or_default() += (after - before).max(0.0);
        }
        let all: f64 = used.values().sum();
        used.insert("all".into(), all);
        let calls = calls.max(1) as f64;
        used.into_iter()
            .map(|(group, seconds)| (group, seconds * 1e6 / calls))
            .collect()
    }
}

/// User + system CPU seconds of `pid`, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = fields_after_name(&stat)?;
    // After "pid (comm)": state is field 3; utime and stime are 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// The fields of a `stat` line after the command name, which may itself
/// hold spaces and parentheses.
fn fields_after_name(stat: &str) -> Option<Vec<&str>> {
    let close = stat.rfind(')')?;
    Some(stat[close + 1..].split_whitespace().collect())
}

/// The processes whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| fields_after_name(&stat)?.get(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_loop_in_this_process_is_counted_as_the_generator() {
        let processes = Processes::new(Vec::new(), None);
        let before = processes.snapshot();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let wall = started.elapsed();
        let per_call = before.per_call(&processes.snapshot(), 1000);
        // At most the wall time (one thread spinning; ticks are 10 ms, and
        // other threads of the test may add a little), and some of it.
        let generator = per_call["generator"];
        // (Two cores: the test's other threads may run beside it.)
        let most = (2.0 * wall.as_secs_f64() + 0.05) * 1e6 / 1000.0;
        assert!(
            generator > 0.0 && generator <= most,
            "{per_call:?}, wall {wall:?}"
        );
        assert_eq!(per_call["all"], generator);
    }

    #[test]
    fn names_with_spaces_and_parentheses_do_not_shift_the_fields() {
        let stat = "42 (a (b) c) S 7 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        let fields = fields_after_name(stat).unwrap();
        assert_eq!(fields[1], "7", "the parent");
        assert_eq!((fields[11], fields[12]), ("250", "50"));
    }
}
