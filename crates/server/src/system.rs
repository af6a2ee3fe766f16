//! The machine's health as the server sees it: CPU, memory, and the disk
//! holding the data directory, each `healthy`, `warning` or `critical`
//! against the configured thresholds.
//!
//! A thread samples every second, so a write request's "is the disk
//! critically full?" costs a mutex read, not a system call.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sysinfo::{Disks, System};
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
}

/// `GET /api/v1/system/health`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SystemHealth {
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
    latest: Mutex<Option<SystemHealth>>,
}

pub struct SystemMonitor {
    shared: Arc<Shared>,
}

impl SystemMonitor {
    pub fn new(dir: &Path, thresholds: &Health) -> SystemMonitor {
        let shared = Arc::new(Shared {
            thresholds: thresholds.clone(),
            dir: dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
            latest: Mutex::new(None),
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

    /// The latest sample (at most about a second old).
    pub fn health(&self) -> SystemHealth {
        let latest = self.shared.latest.lock().unwrap_or_else(|e| e.into_inner()).clone();
        latest.unwrap_or_else(|| sample(&self.shared, System::new().ok().as_mut()))
    }

    /// Why writes must stop, if the data directory's disk is critically full.
    pub fn disk_critical(&self) -> Option<String> {
        // Asked on every write: look before copying the snapshot.
        let critical = self
            .shared
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|h| h.disk.status == Level::Critical);
        if !critical {
            return None;
        }
        let h = self.health();
        (h.disk.status == Level::Critical).then(|| {
            format!(
                "the disk holding the data directory is {:.1}% full (critical at {}%); writes are refused so that nothing acknowledged is lost",
                h.disk.used_percent, self.shared.thresholds.disk_critical_percent
            )
        })
    }
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

fn sample(shared: &Shared, system: Option<&mut System>) -> SystemHealth {
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
    let (disk_used, disk_total) = disk_of(&shared.dir);
    let cpu = Resource {
        status: level(cpu_used, t.cpu_warning_percent, t.cpu_critical_percent),
        used_percent: cpu_used,
        used_bytes: None,
        total_bytes: None,
    };
    let mem_pct = percent(mem_used, mem_total);
    let memory = Resource {
        status: level(mem_pct, t.memory_warning_percent, t.memory_critical_percent),
        used_percent: mem_pct,
        used_bytes: Some(mem_used),
        total_bytes: Some(mem_total),
    };
    let disk_pct = percent(disk_used, disk_total);
    let disk = Resource {
        status: level(disk_pct, t.disk_warning_percent, t.disk_critical_percent),
        used_percent: disk_pct,
        used_bytes: Some(disk_used),
        total_bytes: Some(disk_total),
    };
    let status = cpu.status.max(memory.status).max(disk.status);
    SystemHealth {
        status,
        cpu,
        memory,
        disk,
        data_dir: shared.dir.display().to_string(),
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

/// Used and total bytes of the file system holding `dir`: the mounted disk
/// whose mount point is the longest prefix of it.
fn disk_of(dir: &Path) -> (u64, u64) {
    let Ok(disks) = Disks::new_with_refreshed_list() else {
        return (0, 0);
    };
    disks
        .iter()
        .filter(|d| dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| (d.total_space().saturating_sub(d.available_space()), d.total_space()))
        .unwrap_or((0, 0))
}
