//! Compute device selection by name: the one place that knows which Burn backends this build
//! has. Models, tools and the CLI all ask here.

use burn::tensor::Device;

/// An unknown device name, or a backend this build was compiled without.
#[derive(Debug, thiserror::Error)]
#[error("unknown or not compiled-in device {name:?} (available: {available})")]
pub struct BackendError {
    /// The name that was asked for.
    pub name: String,
    /// The device names this build accepts, comma-separated.
    pub available: String,
}

/// Device names this build accepts: `flex` always, `ndarray` and `wgpu` with the cargo
/// features of the same names.
pub fn available() -> Vec<&'static str> {
    let mut names = vec!["flex"];
    if cfg!(feature = "ndarray") {
        names.push("ndarray");
    }
    if cfg!(feature = "wgpu") {
        names.push("wgpu");
    }
    names
}

/// Compute device by name: `flex` (alias `cpu`, Burn's default CPU backend), `ndarray` and
/// `wgpu` when built with the cargo features of the same names.
///
/// # Errors
/// [`BackendError`] for an unknown name or a backend not compiled in.
pub fn device(name: &str) -> Result<Device, BackendError> {
    match name {
        "flex" | "cpu" => Ok(Device::flex()),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => Ok(Device::ndarray()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(Default::default())),
        other => Err(BackendError {
            name: other.to_string(),
            available: available().join(", "),
        }),
    }
}
