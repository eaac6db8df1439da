//! `bursar migrate`: applies the database migrations and exits.
use clap::Args;

use super::CliError;
use super::setup::DbArgs;
use crate::config::Config;
use crate::store::Store;

#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DbArgs,
}

pub async fn run(cfg: Config) -> Result<(), CliError> {
    let store = Store::open(&cfg.database_url).await?;
    crate::outln!("migrations applied ({})", store.backend());
    store.close().await;
    Ok(())
}
