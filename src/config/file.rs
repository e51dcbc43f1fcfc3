//! Reading the TOML configuration file.

use super::{Config, ConfigError};

/// Reads and parses `path`. Unknown keys are refused, with the key named.
pub fn read(path: &str) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_string(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_string(),
        message: e.to_string(),
    })
}
