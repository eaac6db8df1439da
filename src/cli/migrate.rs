//! `bursar migrate`: applies the database migrations and exits; with
//! `[dashboards] reader_password`, also lets the dashboards' role `bursar_reader` log in.
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
    let r = match &cfg.dashboards.reader_password {
        Some(password) => store.set_reader_password(password).await.map(|set| {
            if set {
                crate::outln!("bursar_reader can log in with the configured password");
            }
        }),
        None => Ok(()),
    };
    store.close().await;
    Ok(r?)
}
