//! `quid run`: the composition root and nothing else. It checks what can be refused without
//! the kernel, loads (or adopts the pinned maps), starts the HTTP services, installs the table,
//! attaches, and hands over to the main loop; on SIGINT/SIGTERM it makes a final read and
//! either leaves the programs counting (`on_stop = "keep"`) or detaches them.
//!
//! Each step is a module of its own; nothing outside this folder imports any of them but
//! `main.rs`, which calls [`run`] and (for `quid check`) [`preflight::preflight`].

mod accounting_out;
mod bindings;
mod interfaces;
mod kernel_setup;
mod main_loop;
mod per_interval;
pub mod preflight;
mod publish;
mod reload;
mod services;
mod shipping;
mod shutdown;
mod state;
mod table_follower;

use anyhow::Context as _;

use crate::{
    clock::Clock, config::Config, kernel::subscriber_maps as registry, metrics::route::Published,
    store::Store,
};

use self::{preflight::Preflight, state::State};

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    crate::kernel::capabilities::check(&[
        &config.metrics.listen,
        &config.reports.listen,
        &config.operator.listen,
    ])?;
    let Preflight {
        table,
        nodes,
        tls,
        token,
        radius_clients,
        accounting_out,
    } = preflight::preflight(&config)?;
    registry::check_fits(&table, config.subscribers.sizes())?;
    let state_dir = &config.daemon.state_dir;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    let clock = Clock::system();
    let mut store = Store::open(state_dir)?;
    // With a shared store, every interval commit seals its usage for the shipper.
    store.seal_batches(config.store.shared.is_some());
    // What the binding sources held when the last run stopped: each source settles its own.
    let held = store.live_bindings()?;
    let mut kernel = kernel_setup::open(&config, store, clock.clone())?;
    let kernel_log = kernel.log.take();
    let published = Published::default();
    // From here a failed start undoes what it did: nothing half-started stays attached or
    // pinned (the first interface attached and the second refused, say).
    let services = match services::start(
        &config,
        nodes,
        tls,
        token,
        services::SourceInputs {
            radius_clients,
            held: held.clone(),
            accounting_out,
        },
        published.clone(),
        &clock,
    )
    .await
    {
        Ok(services) => services,
        Err(e) => return Err(kernel_setup::abandon(&mut kernel.dp, e)),
    };
    let mut state = State::new(&config, kernel, services, published, clock);
    if let Err(e) = state
        .install_first(table, held)
        .and_then(|()| state.attach_configured())
    {
        return Err(kernel_setup::abandon(&mut state.dp, e));
    }

    let result = state.count_until_signal(kernel_log).await;
    state.stop()?;
    result
}
