//! What the agent reads from the GPUs: `GpuReader`, one small trait (so tests use a
//! stand-in), and `NvmlReader`, its real implementation over NVIDIA's NVML through
//! `nvml-wrapper`, which loads `libnvidia-ml.so.1` at run time: the binary runs where no
//! NVIDIA driver is installed, and `NvmlReader::open` says so instead.
use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

/// One GPU's reading at one moment. Utilisation is a percentage (0–100); memory in MiB and
/// power in watts are `None` where the GPU does not report them.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuReading {
    /// The GPU's index on the machine ("0", "1", …), as dcgm-exporter's `gpu` label names
    /// it, so pushed samples and scraped ones agree.
    pub gpu: String,
    pub utilization_percent: f64,
    pub memory_used_mib: Option<f64>,
    pub power_watts: Option<f64>,
}

/// Reads every GPU of this machine. A GPU whose utilisation cannot be read is left out
/// (missing data is unknown, never zero); an `Err` means nothing could be read.
pub trait GpuReader: Send {
    fn read(&mut self) -> Result<Vec<GpuReading>, String>;
}

/// NVML could not be loaded or started: no NVIDIA driver here. One line.
#[derive(Debug, thiserror::Error)]
#[error(
    "NVML is not available on this machine ({detail}); `bursar agent` reads GPUs through the NVIDIA driver's NVML library, so it needs the NVIDIA driver installed and loaded"
)]
pub struct NvmlUnavailable {
    detail: String,
}

/// The real reader: NVML, loaded at run time.
pub struct NvmlReader {
    nvml: Nvml,
}

impl NvmlReader {
    /// Loads `libnvidia-ml.so.1` and initialises NVML.
    pub fn open() -> Result<NvmlReader, NvmlUnavailable> {
        Nvml::init().map(|nvml| NvmlReader { nvml }).map_err(|e| {
            let detail = match &e {
                NvmlError::LibloadingError(l) => format!("cannot load the library: {l}"),
                NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".to_string(),
                other => other.to_string(),
            };
            NvmlUnavailable {
                detail: crate::domain::quote::clip(&detail),
            }
        })
    }
}

/// MiB from NVML's bytes.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl GpuReader for NvmlReader {
    fn read(&mut self) -> Result<Vec<GpuReading>, String> {
        let n = self
            .nvml
            .device_count()
            .map_err(|e| format!("NVML device count: {e}"))?;
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let device = match self.nvml.device_by_index(i) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(gpu = i, error = %e, "NVML: cannot open GPU; left out");
                    continue;
                }
            };
            let utilization = match device.utilization_rates() {
                Ok(u) => f64::from(u.gpu),
                Err(e) => {
                    tracing::warn!(gpu = i, error = %e, "NVML: no utilisation; GPU left out");
                    continue;
                }
            };
            out.push(GpuReading {
                gpu: i.to_string(),
                utilization_percent: utilization,
                memory_used_mib: device.memory_info().ok().map(|m| mib(m.used)),
                // Milliwatts.
                power_watts: device.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_become_mebibytes() {
        assert_eq!(mib(74 * 1024 * 1024 * 1024), 75_776.0);
        assert_eq!(mib(0), 0.0);
    }

    /// This machine has no NVIDIA driver (CI's neither): opening NVML fails with one line
    /// that says the agent needs the driver. Where a driver exists, reading must work.
    #[test]
    fn opening_nvml_either_reads_gpus_or_says_the_driver_is_needed_in_one_line() {
        match NvmlReader::open() {
            Ok(mut r) => {
                let gpus = r.read().expect("NVML opened, so GPUs can be read");
                for g in gpus {
                    assert!((0.0..=100.0).contains(&g.utilization_percent), "{g:?}");
                }
            }
            Err(e) => {
                let line = e.to_string();
                assert!(!line.contains('\n'), "{line}");
                assert!(line.contains("NVIDIA driver"), "{line}");
            }
        }
    }
}
