//! What every command gets from the global flags: the home it works on and how to print.

use crate::client::Client;
use crate::error::CliError;
use crate::home::Home;
use crate::output::Out;

/// The resolved global flags.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub home: Home,
    pub out: Out,
}

impl Ctx {
    /// Connects to the node running in this home.
    pub async fn connect(&self) -> Result<Client, CliError> {
        Client::connect(&self.home).await
    }
}
