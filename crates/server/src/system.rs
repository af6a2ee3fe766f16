//! The machine's health as the server sees it: CPU, memory, and the disk
//! holding the data directory, each `healthy`, `warning` or `critical`
//! against the configured thresholds.
//!
//! A thread samples CPU and memory every second. The disk is asked directly
//! (`statvfs` of the data directory, one system call) whenever it matters:
//! before each write, so that a fast writer cannot outrun a sample and reach
//! a full disk, and for each health report, so that health describes the
//! file system the data directory is on, whatever is mounted where.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sysinfo::System;
use utoipa::ToSchema;

use crate::config::Health;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Healthy,
    Warning,
    Critical,
}

/// One resource's use.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Resource {
    pub status: Level,
    pub used_percent: f64,
    /// Bytes in use and in total (memory, disk); absent for CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    /// Bytes available to the server (disk only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
    /// Free bytes writes must leave (disk only; `health.disk_reserve_bytes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserve_bytes: Option<u64>,
}

/// The machine's resources as the server sees them: what health reports
/// beside each log's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    /// The worst of the three.
    pub status: Level,
    pub cpu: Resource,
    pub memory: Resource,
    pub disk: Resource,
    /// The data directory whose file system `disk` describes.
    pub data_dir: String,
}

struct Shared {
    thresholds: Health,
    dir: PathBuf,
    /// CPU and memory, sampled each second (the disk is asked when needed).
    latest: Mutex<Option<(Resource, Resource)>>,
    /// Bytes writes may still take without asking the file system again
    /// (see [`SystemMonitor::check_room`]), and until when, in milliseconds
    /// since `born`.
    credit: AtomicU64,
    credit_until: AtomicU64,
    born: Instant,
}

/// How long a statvfs answer stands for admitting writes.
const CREDIT_MS: u64 = 100;

pub struct SystemMonitor {
    shared: Arc<Shared>,
}

impl SystemMonitor {
    pub fn new(dir: &Path, thresholds: &Health) -> SystemMonitor {
        let shared = Arc::new(Shared {
            thresholds: thresholds.clone(),
            dir: dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
            latest: Mutex::new(None),
            credit: AtomicU64::new(0),
            credit_until: AtomicU64::new(0),
            born: Instant::now(),
        });
        // Without /proc (sysinfo refuses) CPU and memory read as 0%.
        let mut system = System::new().ok();
        let first = sample(&shared, system.as_mut());
        *shared.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(first);
        let weak = Arc::downgrade(&shared);
        // Ends once the monitor is dropped.
        let _ = std::thread::Builder::new()
            .name("sealtrail-system".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(1));
                let Some(shared) = weak.upgrade() else { return };
                let now = sample(&shared, system.as_mut());
                *shared.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
            });
        SystemMonitor { shared }
    }

    /// CPU and memory as last sampled (at most about a second old), the
    /// disk as it is now.
    pub fn health(&self) -> Resources {
        let latest = self.shared.latest.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (cpu, memory) = latest.unwrap_or_else(|| sample(&self.shared, System::new().ok().as_mut()));
        let disk = disk(&self.shared);
        Resources {
            status: cpu.status.max(memory.status).max(disk.status),
            cpu,
            memory,
            disk,
            data_dir: self.shared.dir.display().to_string(),
        }
    }

    /// Why no write may start now, if the data directory's disk is
    /// critically full: at or past `health.disk_critical_percent`, or too
    /// little free space for the reserve (as [`SystemMonitor::check_room`]).
    pub fn disk_critical(&self) -> Option<String> {
        self.check_room(0).err()
    }

    /// Whether a write of about `bytes` may start: the data directory's
    /// file system (statvfs) must keep `health.disk_reserve_bytes` free
    /// beyond it and stay below the critical percentage. The refusal says
    /// why.
    ///
    /// A statvfs per request cost more than the rest of the check; instead
    /// each answer grants a credit of a quarter of the room it found (the
    /// ledger and index write more than the request's bytes), for at most
    /// `CREDIT_MS`. Writes admitted on credit are counted against it, so
    /// however fast the writers, they cannot spend more than that quarter
    /// before the file system is asked again.
    pub fn check_room(&self, bytes: u64) -> Result<(), String> {
        let shared = &self.shared;
        let now = shared.born.elapsed().as_millis() as u64;
        if now < shared.credit_until.load(Ordering::Acquire)
            && shared
                .credit
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| c.checked_sub(bytes))
                .is_ok()
        {
            return Ok(());
        }
        let Some(space) = space_of(&shared.dir) else {
            return Err("the free space of the data directory's file system cannot be read".into());
        };
        room(space, &shared.thresholds, bytes)?;
        let t = &shared.thresholds;
        let to_reserve = space.free.saturating_sub(t.disk_reserve_bytes.saturating_add(bytes));
        let critical_used = (space.total as f64 * t.disk_critical_percent / 100.0) as u64;
        let to_critical = critical_used.saturating_sub(space.used().saturating_add(bytes));
        shared.credit.store(to_reserve.min(to_critical) / 4, Ordering::Release);
        shared.credit_until.store(now + CREDIT_MS, Ordering::Release);
        Ok(())
    }
}

/// Whether `space` has room for a write of `bytes` under `t`.
fn room(space: Space, t: &Health, bytes: u64) -> Result<(), String> {
    if space.free < t.disk_reserve_bytes.saturating_add(bytes) {
        return Err(format!(
            "the data directory's file system has {} bytes free; a write of {bytes} bytes must leave {} (health.disk_reserve_bytes), so writes are refused until space is freed",
            space.free, t.disk_reserve_bytes
        ));
    }
    let used = percent(space.used(), space.total);
    if level(used, t.disk_warning_percent, t.disk_critical_percent) == Level::Critical {
        return Err(format!(
            "the data directory's file system is {used:.1}% full (critical at {}%); writes are refused so that nothing acknowledged is lost",
            t.disk_critical_percent
        ));
    }
    Ok(())
}

fn level(used: f64, warning: f64, critical: f64) -> Level {
    if used >= critical {
        Level::Critical
    } else if used >= warning {
        Level::Warning
    } else {
        Level::Healthy
    }
}

fn percent(used: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        used as f64 * 100.0 / total as f64
    }
}

/// CPU and memory use now.
fn sample(shared: &Shared, system: Option<&mut System>) -> (Resource, Resource) {
    let t = &shared.thresholds;
    let (cpu_used, mem_used, mem_total) = match system {
        Some(system) => {
            system.refresh_cpu_usage();
            system.refresh_memory();
            (
                f64::from(system.global_cpu_usage()),
                system.used_memory(),
                system.total_memory(),
            )
        }
        None => (0.0, 0, 0),
    };
    let cpu = Resource {
        status: level(cpu_used, t.cpu_warning_percent, t.cpu_critical_percent),
        used_percent: cpu_used,
        used_bytes: None,
        total_bytes: None,
        free_bytes: None,
        reserve_bytes: None,
    };
    let mem_pct = percent(mem_used, mem_total);
    let memory = Resource {
        status: level(mem_pct, t.memory_warning_percent, t.memory_critical_percent),
        used_percent: mem_pct,
        used_bytes: Some(mem_used),
        total_bytes: Some(mem_total),
        free_bytes: None,
        reserve_bytes: None,
    };
    (cpu, memory)
}

/// The data directory's file system now. Below the reserve counts as
/// critical, as writes are refused there.
fn disk(shared: &Shared) -> Resource {
    let t = &shared.thresholds;
    let space = space_of(&shared.dir).unwrap_or_default();
    let used = percent(space.used(), space.total);
    let mut status = level(used, t.disk_warning_percent, t.disk_critical_percent);
    if space.free < t.disk_reserve_bytes {
        status = Level::Critical;
    }
    Resource {
        status,
        used_percent: used,
        used_bytes: Some(space.used()),
        total_bytes: Some(space.total),
        free_bytes: Some(space.free),
        reserve_bytes: Some(t.disk_reserve_bytes),
    }
}

impl PartialOrd for Level {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Level {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

/// Size and free space of a file system, in bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Space {
    total: u64,
    /// Available to an unprivileged writer.
    free: u64,
}

impl Space {
    fn used(&self) -> u64 {
        self.total.saturating_sub(self.free)
    }
}

/// The file system holding `dir`, asked directly (statvfs): the one the
/// data directory is really on, whatever else is mounted.
fn space_of(dir: &Path) -> Option<Space> {
    let v = rustix::fs::statvfs(dir).ok()?;
    Some(Space {
        total: v.f_blocks.saturating_mul(v.f_frsize),
        free: v.f_bavail.saturating_mul(v.f_frsize),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_write_must_leave_the_reserve_free_to_the_byte() {
        let t = Health {
            disk_reserve_bytes: 1_000,
            disk_warning_percent: 100.0,
            disk_critical_percent: 100.0,
            ..Health::default()
        };
        let space = Space {
            total: 1 << 30,
            free: 1_500,
        };
        assert!(room(space, &t, 500).is_ok(), "leaves exactly the reserve");
        let refused = room(space, &t, 501).unwrap_err();
        assert!(refused.contains("disk_reserve_bytes"), "{refused}");
        // No reserve, no percentage: only writes that do not fit are refused.
        let none = Health {
            disk_reserve_bytes: 0,
            disk_warning_percent: 100.0,
            disk_critical_percent: 100.0,
            ..Health::default()
        };
        let nearly_full = Space {
            total: 1 << 30,
            free: 10,
        };
        assert!(room(nearly_full, &none, 10).is_ok());
        assert!(room(nearly_full, &none, 11).is_err());
        assert!(
            room(
                Space {
                    total: 1 << 30,
                    free: 0
                },
                &none,
                0
            )
            .is_err(),
            "100% full"
        );
        // The critical percentage still applies with room to spare.
        let full = Space {
            total: 1_000_000,
            free: 40_000,
        };
        let no_reserve = Health {
            disk_reserve_bytes: 0,
            ..Health::default()
        };
        assert!(room(full, &no_reserve, 0).unwrap_err().contains("96.0% full"));
    }
}
