//! Paced compaction: packing that leaves a busy machine's CPUs to ingest.
//!
//! Compressing costs CPU: about a third as much again as ingesting the same
//! events (BENCHMARKS.md, "Ledger compression"). When ingest keeps the
//! machine's CPUs busy, every cycle compaction takes, at whatever priority,
//! comes out of ingest. So a paced compaction first looks at how much CPU
//! the machine left idle: below [`Pace::idle_cpus`] it packs nothing and
//! says so ([`PacedReport::deferred`]), and its caller looks again later
//! while the backlog grows. The backlog has a bound, [`Pace::max_deferred`]:
//! past it, the log packs whatever the load, so a machine that is never
//! idle still gets its disk back, at the cost to ingest the bound only
//! postpones.
//!
//! On an idle machine everything waiting is packed at once, as
//! [`Log::compact`] packs it. Over the bound, what is packed is the oldest
//! entry files, up to the first file start that leaves fewer than the
//! bound waiting: a deferred run cuts the file appended to every
//! [`Pace::step`] entries, so the backlog is a run of files and packing up
//! to a file's start copies fewer than a bundle's entries (packing into
//! the middle of a file copies the rest of it).
//!
//! The load is the machine's, from `/proc/stat`: time that neither ran a
//! task at normal priority nor sat idle is not counted as busy, so work at
//! a lowered priority (`nice`), this compaction's own included, does not
//! make the machine look busy. In a container `/proc/stat` is usually the
//! host's. Where it cannot be read the machine counts as idle and
//! compaction never defers.

use super::compact::CompactReport;
use super::packs::BUNDLE;
use super::Log;
use crate::error::Result;
use std::time::{Duration, Instant};

/// When a paced compaction may pack (see the module's text).
#[derive(Debug, Clone, PartialEq)]
pub struct Pace {
    /// A deferred run cuts the entry file appended to once it holds this
    /// many entries, so that a step over the bound can pack up to a file's
    /// start.
    pub step: u64,
    /// CPUs that must have been idle since the last look for a run to
    /// pack: compaction then has a CPU to itself. Capped at half the
    /// machine's CPUs; 0 never defers.
    pub idle_cpus: f64,
    /// Entries waiting to be packed at which compaction packs however
    /// busy the machine is.
    pub max_deferred: u64,
    /// How often a deferred run looks at the load again (the caller's
    /// wait), and the least time a look measures: the first look of a
    /// [`CpuMeter`] watches a quarter of it.
    pub look: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            // A pack's worth: a backlog at the bound is at most 16 files.
            step: super::compact::MAX_PACK_BUNDLES * BUNDLE,
            idle_cpus: 1.0,
            // About 1.2 GB of generated events' records.
            max_deferred: 4 << 20,
            look: Duration::from_secs(1),
        }
    }
}

/// What [`Log::compact_paced`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PacedReport {
    /// The packing: from the first step's start to the last step's end,
    /// and the bytes of every step.
    pub packed: CompactReport,
    /// Steps run, and of them those run because the backlog had reached
    /// [`Pace::max_deferred`].
    pub steps: u64,
    pub forced_steps: u64,
    /// Whether it returned because the machine was busy and the backlog
    /// below the bound: the caller should look again after
    /// [`Pace::look`].
    pub deferred: bool,
    /// Entries still waiting when it returned.
    pub left: u64,
}

impl Log {
    /// Pack everything [`Log::compact`] would unless the machine is busy:
    /// with fewer than [`Pace::idle_cpus`] idle and fewer than
    /// [`Pace::max_deferred`] entries waiting, pack nothing more and
    /// return deferred. Over the bound, pack the oldest files until fewer
    /// wait; otherwise everything at once. `stop` is looked at before
    /// every step.
    pub fn compact_paced(&self, pace: &Pace, meter: &mut CpuMeter, stop: &dyn Fn() -> bool) -> Result<PacedReport> {
        let mut out = PacedReport::default();
        let mut first = true;
        loop {
            if let Some(e) = self.inner.damage_error() {
                return Err(e);
            }
            // What `unpacked` counts, its two ends read once.
            let end = self.size() / BUNDLE * BUNDLE;
            let waiting = end.saturating_sub(self.packed_to());
            out.left = waiting;
            if waiting == 0 || stop() {
                return Ok(out);
            }
            let over_bound = waiting >= pace.max_deferred;
            let limit = if over_bound {
                // The first file start that leaves fewer than the bound
                // waiting: one step, so the files it replaces go at once.
                let least = end - pace.max_deferred.min(waiting);
                self.next_file_start(least).unwrap_or(u64::MAX)
            } else {
                let wanted = pace.idle_cpus.min(meter.cpus() / 2.0);
                if wanted > 0.0 && meter.idle_cpus(pace.look) < wanted {
                    self.cut_entry_file(pace.step)?;
                    out.deferred = true;
                    return Ok(out);
                }
                u64::MAX
            };
            let report = self.compact_below(limit)?;
            if first {
                out.packed.from = report.from;
                first = false;
            }
            out.packed.to = report.to;
            out.packed.raw_bytes += report.raw_bytes;
            out.packed.packed_bytes += report.packed_bytes;
            out.packed.bytes_freed += report.bytes_freed;
            out.steps += 1;
            if over_bound {
                out.forced_steps += 1;
            }
        }
    }
}

/// Counters of `/proc/stat`'s `cpu` line, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    /// Ticks idle or waiting for I/O.
    idle: u64,
    /// Every tick, of every kind.
    total: u64,
    /// Ticks spent running work at a lowered priority.
    nice: u64,
    /// The `cpuN` lines: the machine's CPUs.
    cpus: usize,
}

/// Text in `/proc/stat`'s format, read afresh at every look.
type StatSource = Box<dyn FnMut() -> Option<String> + Send>;

/// The machine's idle CPUs between two looks, from `/proc/stat`.
pub struct CpuMeter {
    cpus: f64,
    /// The last look: when, and the counters it read (`None`: none could
    /// be read, and no look reads them again).
    last: Option<(Instant, Option<CpuTimes>)>,
    idle: Option<f64>,
    source: StatSource,
}

impl std::fmt::Debug for CpuMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuMeter")
            .field("cpus", &self.cpus)
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

impl Default for CpuMeter {
    fn default() -> Self {
        CpuMeter::new()
    }
}

impl CpuMeter {
    /// A meter of this machine.
    pub fn new() -> CpuMeter {
        CpuMeter::reading("/proc/stat")
    }

    /// A meter that reads its counters from the file `stat`, in
    /// `/proc/stat`'s format.
    pub fn reading(stat: impl Into<std::path::PathBuf>) -> CpuMeter {
        let stat = stat.into();
        CpuMeter::from_source(move || std::fs::read_to_string(&stat).ok())
    }

    /// A meter whose counters are the text `source` returns at each look,
    /// in `/proc/stat`'s format (`None`: not readable). Tests give it a
    /// machine of their own.
    pub fn from_source(source: impl FnMut() -> Option<String> + Send + 'static) -> CpuMeter {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        CpuMeter {
            cpus,
            last: None,
            idle: None,
            source: Box::new(source),
        }
    }

    /// The CPUs this meter counts: the machine's, once a look has read
    /// them, else the ones this process may use.
    pub fn cpus(&self) -> f64 {
        self.cpus
    }

    /// The idle share found by the last look, in CPUs, if one was made.
    pub fn last_idle(&self) -> Option<f64> {
        self.idle
    }

    /// CPUs idle on average since the last look, in CPUs (the machine's
    /// CPU count when the counters cannot be read). A look less than a
    /// quarter of `window` after the one before returns that one's value:
    /// counters tick a hundred times a second, too coarse for less. The
    /// first look watches a quarter of `window` to have something to
    /// compare.
    pub fn idle_cpus(&mut self, window: Duration) -> f64 {
        let least = window / 4;
        if self.last.is_none() {
            // Counters that cannot be read are not waited for again.
            let first = self.sample();
            let readable = first.is_some();
            self.last = Some((Instant::now(), first));
            if readable {
                std::thread::sleep(least);
            }
        }
        let Some((at, Some(before))) = self.last else {
            return self.cpus;
        };
        if at.elapsed() < least {
            if let Some(idle) = self.idle {
                return idle;
            }
        }
        let Some(now) = self.sample() else {
            return self.cpus;
        };
        self.last = Some((Instant::now(), Some(now)));
        let total = now.total.saturating_sub(before.total);
        if total == 0 {
            return self.idle.unwrap_or(self.cpus);
        }
        // Lowered-priority work yields to anything else: count it idle.
        let idle = now.idle.saturating_sub(before.idle) + now.nice.saturating_sub(before.nice);
        // The counters are the whole machine's, which may have more CPUs
        // than this process may use.
        if now.cpus > 0 {
            self.cpus = now.cpus as f64;
        }
        let share = (idle as f64 / total as f64).clamp(0.0, 1.0) * self.cpus;
        self.idle = Some(share);
        share
    }

    fn sample(&mut self) -> Option<CpuTimes> {
        let text = (self.source)()?;
        let mut times = parse_cpu_line(text.lines().next()?)?;
        times.cpus = text
            .lines()
            .filter(|l| {
                l.strip_prefix("cpu")
                    .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()))
            })
            .count();
        Some(times)
    }
}

/// The aggregate `cpu` line of `/proc/stat`: user, nice, system, idle,
/// iowait, irq, softirq, steal (guest time is inside user and nice).
fn parse_cpu_line(line: &str) -> Option<CpuTimes> {
    let mut fields = line.split_ascii_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields
        .take(8)
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    if ticks.len() < 5 {
        return None;
    }
    Some(CpuTimes {
        idle: ticks[3] + ticks[4],
        total: ticks.iter().sum(),
        nice: ticks[1],
        cpus: 0,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_cpu_line_gives_idle_nice_and_total_ticks() {
        let t = parse_cpu_line("cpu  100 20 30 400 50 6 7 8 9 10").unwrap();
        assert_eq!((t.idle, t.nice, t.total), (450, 20, 621));
        assert!(parse_cpu_line("cpu0 1 2 3 4 5").is_none());
        assert!(parse_cpu_line("cpu 1 2 x 4 5").is_none());
        assert!(parse_cpu_line("cpu 1 2 3").is_none());
    }

    #[test]
    fn idle_is_measured_between_looks_with_niced_work_counted_idle() {
        let dir = tempfile::tempdir().unwrap();
        let stat = dir.path().join("stat");
        std::fs::write(&stat, "cpu  0 0 0 0 0 0 0 0\n").unwrap();
        let mut meter = CpuMeter::reading(&stat);
        let cpus = meter.cpus();
        assert!(cpus >= 1.0);
        // The first look reads, waits a quarter window, reads again: the
        // file did not change, so it repeats the machine's CPU count.
        assert_eq!(meter.idle_cpus(Duration::from_millis(4)), cpus);
        // 300 ticks busy at normal priority, 100 niced, 0 idle: a quarter
        // of the machine counts as idle.
        std::fs::write(&stat, "cpu  300 100 0 0 0 0 0 0\n").unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(meter.idle_cpus(Duration::from_millis(4)), cpus / 4.0);
        // Then 100 busy, 300 idle or waiting for I/O: three quarters.
        std::fs::write(&stat, "cpu  400 100 0 200 100 0 0 0\n").unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(meter.idle_cpus(Duration::from_millis(4)), cpus * 0.75);
        assert_eq!(meter.last_idle(), Some(cpus * 0.75));
        // A machine of four CPUs (its `cpuN` lines), half idle: two.
        let four = "cpu0 0 0 0 0 0\ncpu1 0 0 0 0 0\ncpu2 0 0 0 0 0\ncpu3 0 0 0 0 0\n";
        std::fs::write(&stat, format!("cpu  600 100 0 400 100 0 0 0\n{four}")).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(meter.idle_cpus(Duration::from_millis(4)), 2.0);
        assert_eq!(meter.cpus(), 4.0);
    }

    #[test]
    fn a_meter_without_counters_counts_the_machine_idle() {
        let mut meter = CpuMeter::reading("/nonexistent/stat");
        assert_eq!(meter.idle_cpus(Duration::from_millis(4)), meter.cpus());
    }
}
