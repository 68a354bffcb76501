//! `quid cluster status` and `quid cluster usage`: the shared store as this router sees it
//! (every router's last shipment and lag, the reports held once, this router's outbox), and
//! one subscriber's usage summed over every router.

use anyhow::{Context as _, bail};
use std::path::Path;

use quid::{
    clock::{Clock, rfc3339_or_secs},
    cluster::{config::SharedConfig, tables::SharedTable},
    config::Config,
    metering::usage_query,
    store::{
        Store,
        shared::{RouterState, SharedStore},
    },
};
use quid_common::{DIR_DOWNLOAD, DIR_UPLOAD};

use super::human::{bytes_exact, count};

/// The shared store's section, or an error saying how to configure one.
fn shared(config: &Config) -> anyhow::Result<&SharedConfig> {
    config.store.shared.as_ref().context(
        "this router has no shared store: set [store] url and router_id in its config (see \
         docs/many-routers.md)",
    )
}

/// Connects as this router, on a runtime of its own.
fn connect<T>(
    cfg: &SharedConfig,
    then: impl AsyncFnOnce(SharedStore) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let tls = cfg.tls().context("store.ca_file")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = SharedStore::connect(cfg, tls).await?;
        then(store).await
    })
}

/// Prints every router's shipping state and this router's outbox; fails (after printing the
/// outbox) when the database does not answer.
pub fn status(config: &Config, json: bool) -> anyhow::Result<()> {
    let cfg = shared(config)?;
    let local = Store::open(&config.daemon.state_dir)?.outbox_depth()?;
    let now = Clock::system().now_i64().context("reading the clock")?;
    let reached = connect(cfg, async |s| {
        let mut tables = Vec::new();
        for t in SharedTable::ALL {
            if let Some(stored) = s.table(t).await? {
                tables.push((t, stored));
            }
        }
        Ok((s.routers().await?, s.report_counts().await?, tables))
    });
    let (routers, reports, tables, error) = match reached {
        Ok((r, c, t)) => (r, Some(c), t, None),
        Err(e) => (Vec::new(), None, Vec::new(), Some(format!("{e:#}"))),
    };
    let lag = |r: &RouterState| now.saturating_sub(r.covered_until).max(0);
    if json {
        let v = serde_json::json!({
            "url": cfg.url.to_string(),
            "router_id": cfg.router_id.to_string(),
            "reachable": error.is_none(),
            "error": error,
            "outbox": {
                "batches": local.batches,
                "rows": local.rows,
                "sealed_until": local.sealed_until,
            },
            "routers": routers.iter().map(|r| serde_json::json!({
                "router": r.router,
                "last_seq": r.last_seq,
                "covered_until": r.covered_until,
                "shipped_at": r.shipped_at,
                "lag_seconds": lag(r),
                "batches": r.batches,
                "usage_rows": r.usage_rows,
            })).collect::<Vec<_>>(),
            "reports": reports.map(|(held, differing)| serde_json::json!({
                "held": held, "with_differing_copies": differing,
            })),
            "tables": tables.iter().map(|(t, s)| serde_json::json!({
                "table": t.as_str(), "generation": s.generation, "sha256": s.sha256,
                "pushed_by": s.updated_by, "pushed_at": s.updated_at,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "this router: {}; outbox {} batches, {} usage rows{}",
            cfg.router_id,
            count(local.batches),
            count(local.rows),
            local
                .sealed_until
                .map(|t| format!(", sealed up to {}", rfc3339_or_secs(t)))
                .unwrap_or_default()
        );
        match &error {
            Some(e) => println!("shared store {}: UNREACHABLE: {e}", cfg.url),
            None => println!("shared store {}: reachable", cfg.url),
        }
        if !routers.is_empty() {
            println!(
                "{:<20} {:>10} {:<22} {:>10} {:<22}",
                "router", "last batch", "usage up to", "lag", "last shipment"
            );
            for r in &routers {
                println!(
                    "{:<20} {:>10} {:<22} {:>10} {:<22}",
                    r.router,
                    r.last_seq,
                    rfc3339_or_secs(r.covered_until),
                    format!("{} s", count(lag(r).cast_unsigned())),
                    rfc3339_or_secs(r.shipped_at)
                );
            }
        }
        for (t, s) in &tables {
            println!(
                "shared {} table: generation {}, pushed by {} at {}",
                t.as_str(),
                s.generation,
                s.updated_by,
                rfc3339_or_secs(s.updated_at)
            );
        }
        if let Some((held, differing)) = reports {
            println!(
                "reports: {} held, each once; {} with a differing copy from another router",
                count(held),
                count(differing)
            );
        }
    }
    match error {
        Some(e) => bail!("the shared store did not answer: {e}"),
        None => Ok(()),
    }
}

/// Checks `file` as `table` and makes it the shared one; prints its generation.
pub fn push_table(config: &Config, table: SharedTable, file: &Path) -> anyhow::Result<()> {
    let cfg = shared(config)?;
    let body = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    table
        .check(&body, file, &config.subscribers.table_format())
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}\nnothing was pushed: every router keeps the current {} table",
                table.as_str()
            )
        })?;
    let now = Clock::system().now_i64().context("reading the clock")?;
    let generation = connect(cfg, async |s| Ok(s.push_table(table, &body, now).await?))?;
    println!(
        "pushed the {} table from {} as generation {generation}: routers following the shared \
         tables write and reload it within seconds",
        table.as_str(),
        file.display()
    );
    Ok(())
}

/// Prints `subscriber`'s usage in the hours starting in `[from, to)`, per router and summed.
pub fn usage(
    config: &Config,
    subscriber: &str,
    from: &str,
    to: &str,
    json: bool,
) -> anyhow::Result<()> {
    let cfg = shared(config)?;
    let (from, to) = usage_query::parse_range(from, to)?;
    let u = connect(cfg, async |s| Ok(s.usage(subscriber, from, to).await?))?;
    let dir = |c: &quid_common::SubscriberCounters, d| {
        let x = quid::kernel::counters::direction(c, d);
        (x.bytes, x.packets)
    };
    if json {
        let row = |c| {
            let (ub, up) = dir(c, DIR_UPLOAD);
            let (db, dp) = dir(c, DIR_DOWNLOAD);
            serde_json::json!({"upload_bytes": ub, "upload_packets": up,
                               "download_bytes": db, "download_packets": dp})
        };
        let v = serde_json::json!({
            "subscriber": subscriber, "from": from, "to": to,
            "total": row(&u.total),
            "routers": u.by_router.iter().map(|(r, c)| {
                let mut v = row(c);
                v["router"] = serde_json::Value::from(r.as_str());
                v
            }).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if u.by_router.is_empty() {
        bail!("the shared store holds no usage of {subscriber} in hours starting in that range");
    }
    println!("{:<20} {:>26} {:>26}", "router", "upload", "download");
    let line = |name: &str, c| {
        println!(
            "{:<20} {:>26} {:>26}",
            name,
            bytes_exact(dir(c, DIR_UPLOAD).0),
            bytes_exact(dir(c, DIR_DOWNLOAD).0)
        );
    };
    for (r, c) in &u.by_router {
        line(r, c);
    }
    line("all routers", &u.total);
    Ok(())
}
