//! Where a reload reads the configuration from: a [`ConfigSource`], the function the program
//! that embeds the gateway hands it at bind. The `sockway` binary's reads the file (or the
//! template) and applies its flags, the same function that loaded the configuration it
//! started with, so a reload can see nothing a start would not.

use std::fmt;
use std::sync::Arc;

use super::Config;

/// A function that loads the configuration again, for SIGHUP, `sockway reload` and
/// `POST /@reload` alike. Its error is the text `sockway validate` prints for the same
/// configuration (every problem, one per line).
#[derive(Clone)]
pub struct ConfigSource {
    load: Arc<Load>,
    applied: Option<Arc<Applied>>,
}

/// Loads the configuration.
type Load = dyn Fn() -> Result<Config, String> + Send + Sync;

/// Told of each configuration a reload put in place.
type Applied = dyn Fn(&Config) + Send + Sync;

impl ConfigSource {
    /// A source that calls `load` on each reload. `load` may block (it reads files); the
    /// gateway calls it off the async threads.
    pub fn new(load: impl Fn() -> Result<Config, String> + Send + Sync + 'static) -> Self {
        ConfigSource {
            load: Arc::new(load),
            applied: None,
        }
    }

    /// The same source, calling `applied` with each configuration a reload put in place,
    /// whatever triggered it: for what the embedding program owns itself (the binary's log
    /// level). It must not block.
    pub fn on_applied(mut self, applied: impl Fn(&Config) + Send + Sync + 'static) -> Self {
        self.applied = Some(Arc::new(applied));
        self
    }

    /// Loads the configuration.
    pub fn load(&self) -> Result<Config, String> {
        (self.load)()
    }

    /// Tells the embedding program that `config` is in place.
    pub(crate) fn applied(&self, config: &Config) {
        if let Some(applied) = &self.applied {
            applied(config);
        }
    }
}

impl fmt::Debug for ConfigSource {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ConfigSource")
    }
}
