//! The main loop: waits for the next interval, the once-a-second watch (interfaces and watched
//! files), the operator API, SIGHUP, the kernel log or a stop signal, and hands each to the
//! part of the daemon that deals with it.

use std::time::Duration;

use log::{info, warn};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    time::{MissedTickBehavior, interval},
};

use crate::http::operator::Control;

use super::{kernel_setup::KernelLogFd, state::State};

impl State<'_> {
    /// Runs until SIGINT or SIGTERM.
    pub async fn count_until_signal(
        &mut self,
        mut kernel_log: Option<KernelLogFd>,
    ) -> anyhow::Result<()> {
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut tick = interval(Duration::from_secs(self.config.daemon.interval_secs));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut watch = interval(Duration::from_secs(1));
        watch.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.on_interval(),
                _ = watch.tick() => {
                    self.follow_interfaces();
                    self.reload_changed_files();
                }
                Some(request) = binding_request(&mut self.bindings) => self.on_bindings(request),
                Some(Control::Reload(reply)) = self.control.recv() => {
                    let _ = reply.send(self.reload_files("operator API"));
                }
                _ = sighup.recv() => {
                    self.reload_files("SIGHUP");
                    self.reload_token();
                }
                ready = readable(&mut kernel_log) => match ready {
                    Ok(mut guard) => {
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                    Err(e) => {
                        warn!("kernel log unavailable: {e}");
                        kernel_log = None;
                    }
                },
                _ = sigterm.recv() => { info!("SIGTERM: stopping"); return Ok(()) }
                _ = sigint.recv() => { info!("SIGINT: stopping"); return Ok(()) }
            }
        }
    }
}

/// The next binding request; never, when no binding source runs.
async fn binding_request(
    bindings: &mut Option<(
        crate::bindings::set::Bindings,
        tokio::sync::mpsc::Receiver<crate::bindings::request::BindingRequest>,
    )>,
) -> Option<crate::bindings::request::BindingRequest> {
    match bindings {
        Some((_, requests)) => requests.recv().await,
        None => std::future::pending().await,
    }
}

/// Ready when `fd` can be read; never, when there is none.
async fn readable<T: std::os::fd::AsRawFd>(
    fd: &mut Option<AsyncFd<T>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, T>> {
    match fd {
        Some(fd) => fd.readable_mut().await,
        None => std::future::pending().await,
    }
}
