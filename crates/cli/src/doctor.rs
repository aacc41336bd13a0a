//! `crewship doctor`: checks a daemon and what it needs, one pass/fail
//! line each, and fails (exit 1) when any check does.

use clap::Args;
use serde_json::{Value, json};

use crewship_wire::answers::Status;

use super::client::Query;
use super::ctx::Ctx;
use super::error::{CliError, Result};
use super::render;

#[derive(Args)]
pub struct DoctorArgs {
    /// Free space the daemon's data dir must have, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    min_free_mib: u64,
}

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

fn check(name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
    Check { name, ok, detail: detail.into() }
}

/// The daemon's /healthz, if it is crewshipd's: else the failed check.
/// Read loosely, by its `service` and `version` alone: a daemon of another
/// version is still recognised, to be reported as such.
async fn identify(ctx: &Ctx) -> std::result::Result<Value, Check> {
    let url = ctx.client.url(&["healthz"], &Query::default());
    let (status, kind, body) = match ctx.client.probe(url.clone()).await {
        Ok(answer) => answer,
        Err(e) => return Err(check("reachable", false, e.to_string())),
    };
    match serde_json::from_str::<Value>(&body) {
        Ok(v) if status == 200 && v["service"] == "crewshipd" => Ok(v),
        _ => Err(check(
            "reachable",
            false,
            format!(
                "{url} answers {status} ({}), but it is not crewshipd",
                if kind.is_empty() { "no content type" } else { &kind }
            ),
        )),
    }
}

async fn checks(ctx: &Ctx, args: &DoctorArgs) -> Vec<Check> {
    let health = match identify(ctx).await {
        Ok(h) => h,
        Err(failed) => return vec![failed],
    };
    let version = render::cell(&health["version"]);
    let mut out =
        vec![check("reachable", true, format!("crewshipd {version} at {}", ctx.client.url(&[], &Query::default())))];
    let ready = ctx.client.probe(ctx.client.url(&["readyz"], &Query::default())).await;
    out.push(match ready {
        Ok((200, _, _)) => check("ready", true, "/readyz: a write can commit"),
        Ok((status, _, body)) => check("ready", false, format!("/readyz answered {status}: {body}")),
        Err(e) => check("ready", false, e.to_string()),
    });
    let mine = env!("CARGO_PKG_VERSION");
    out.push(check("version", version == mine, format!("crewship {mine}, crewshipd {version}")));
    let status: Status = match ctx.client.probe(ctx.client.api(&["status"])).await {
        Ok((200, _, body)) => match serde_json::from_str(&body) {
            Ok(status) => status,
            Err(e) => {
                out.push(check(
                    "status",
                    false,
                    format!("/api/v1/status answered what this crewship cannot read: {e}"),
                ));
                return out;
            }
        },
        Ok((code, _, body)) => {
            let e = CliError::from_reply(code, &body);
            out.push(check("token", false, format!("the API refused it: {e}")));
            return out;
        }
        Err(e) => {
            out.push(check("token", false, e.to_string()));
            return out;
        }
    };
    out.push(check("token", true, "the API accepts it"));
    let host = &status.listen.host;
    out.push(match (status.listen.beyond_loopback, status.metrics.token_set) {
        (false, _) => check("metrics token", true, format!("listens on {host} only")),
        (true, true) => {
            check("metrics token", true, format!("listens on {host}; remote scrapers need the token, which is set"))
        }
        (true, false) => check(
            "metrics token",
            false,
            format!("listens on {host} but has no CREWSHIP_METRICS_TOKEN: a remote Prometheus cannot scrape it"),
        ),
    });
    let docker = &status.docker;
    out.push(match (docker.crews, docker.reachable) {
        (0, _) => check("docker", true, "no crew runs in a container"),
        (n, true) => check("docker", true, format!("the engine answers; {n} crews run in containers")),
        (n, false) => check(
            "docker",
            false,
            format!(
                "{n} crews run in containers, but the engine does not answer: {}",
                docker.error.as_deref().unwrap_or("-")
            ),
        ),
    });
    let free = status.data_dir.free_bytes;
    let path = &status.data_dir.path;
    let min = args.min_free_mib.saturating_mul(1 << 20);
    out.push(match free {
        Some(f) if f >= min => check("free space", true, format!("{} MiB free in {path}", f >> 20)),
        Some(f) => {
            check("free space", false, format!("{} MiB free in {path}, under {} MiB", f >> 20, args.min_free_mib))
        }
        None => check("free space", false, format!("cannot tell the free space of {path}")),
    });
    out
}

pub async fn run(ctx: &Ctx, args: DoctorArgs) -> Result<()> {
    let all = checks(ctx, &args).await;
    let failed = all.iter().filter(|c| !c.ok).count();
    if ctx.json {
        let list: Vec<Value> = all.iter().map(|c| json!({"check": c.name, "ok": c.ok, "detail": c.detail})).collect();
        render::print(&format!("{}\n", json!({"ok": failed == 0, "checks": list})))?;
    } else {
        let lines: String = all
            .iter()
            .map(|c| format!("{} {:<13} {}\n", if c.ok { "PASS" } else { "FAIL" }, c.name, c.detail))
            .collect();
        render::print(&lines)?;
    }
    if failed == 0 { Ok(()) } else { Err(CliError::Failed(format!("doctor: {failed} of {} checks failed", all.len()))) }
}
