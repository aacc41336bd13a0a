use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::store::{Location, Synchronous};

fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_sources(&|_| None, &move |k| map.get(k).cloned())
}

#[test]
fn defaults() {
    let c = load(&[("HOME", "/h")]).unwrap();
    assert_eq!(c.listen.port, 8080);
    assert_eq!(c.listen.host.to_string(), "0.0.0.0");
    assert_eq!(c.database.data_dir, PathBuf::from("/h/.crewship"));
    assert!(matches!(&c.database.location, Location::Sqlite(p) if p == &PathBuf::from("/h/.crewship/crewship.db")));
    assert_eq!(c.metrics.cache_ttl, Duration::from_secs(15));
    assert!(c.metrics.allow_loopback);
    assert!(c.metrics.token.is_none());
    assert_eq!(c.journal.archive_after, Duration::from_secs(30 * 86_400));
    // Safe by default: every client shows a token, and an acknowledged
    // write is on disk.
    assert!(!c.security.allow_loopback);
    assert!(c.security.api_token.is_none());
    assert_eq!(c.database.sync, Synchronous::Full);
    assert_eq!(c.listen.header_timeout, Duration::from_secs(10));
    assert_eq!(c.listen.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.runner.max_task_bytes, 256 * 1024);
}

#[test]
fn bad_values_name_the_variable() {
    for (var, value) in [
        ("CREWSHIP_PORT", "80a"),
        ("CREWSHIP_HOST", "nowhere"),
        ("CREWSHIP_METRICS_CACHE_TTL", "soon"),
        ("CREWSHIP_METRICS_ALLOW_LOOPBACK", "maybe"),
        ("CREWSHIP_DATABASE_URL", "mysql://x"),
        ("CREWSHIP_MAX_ATTEMPTS", "0"),
        ("CREWSHIP_EVENT_BUFFER", "100000000000"),
        ("CREWSHIP_LOG", "info,[[["),
        ("RUST_LOG", "[[["),
    ] {
        let err = load(&[(var, value)]).unwrap_err().to_string();
        assert!(err.contains(var), "{err}");
        assert!(err.contains(value), "{err}");
    }
}

#[test]
fn flags_override_env() {
    let flags = |s: &Setting| (s.var == "CREWSHIP_PORT").then(|| "9000".to_string());
    let c = Config::from_sources(&flags, &|k| (k == "CREWSHIP_PORT").then(|| "7000".into())).unwrap();
    assert_eq!(c.listen.port, 9000);
    let flags = |s: &Setting| (s.var == "CREWSHIP_PORT").then(|| "x".to_string());
    let err = Config::from_sources(&flags, &|_| None).unwrap_err().to_string();
    assert!(err.contains("--port"), "{err}");
}

#[test]
fn database_url_forms() {
    let sqlite = |c: Config| match c.database.location {
        Location::Sqlite(p) => p,
        other => panic!("{other:?}"),
    };
    let c = load(&[("CREWSHIP_DATA_DIR", "/d"), ("CREWSHIP_DATABASE_URL", "sqlite:x.db")]).unwrap();
    assert_eq!(sqlite(c), PathBuf::from("/d/x.db"));
    let c = load(&[("CREWSHIP_DATABASE_URL", "sqlite:///abs/y.db?mode=rwc")]).unwrap();
    assert_eq!(sqlite(c), PathBuf::from("/abs/y.db"));
    // PostgreSQL: the password never shows, wherever it came from.
    let c = load(&[("CREWSHIP_DATABASE_URL", "postgres://crew:s3cret@db.example:6543/ops?application_name=n1")]);
    let Location::Postgres(pg) = c.unwrap().database.location else { panic!("not postgres") };
    assert_eq!(pg.describe(), "postgres://crew@db.example:6543/ops");
    assert!(!format!("{pg:?}").contains("s3cret"));
    let c = load(&[("CREWSHIP_DATABASE_URL", "postgresql://crew@db/ops"), ("PGPASSWORD", "pw")]).unwrap();
    assert!(matches!(c.database.location, Location::Postgres(_)));
    let err = load(&[("CREWSHIP_DATABASE_URL", "postgres://db/x?sslmode=require")]).unwrap_err().to_string();
    assert!(err.contains("TLS"), "{err}");
    assert!(load(&[("CREWSHIP_DATABASE_URL", "mysql://x")]).is_err());
}

#[test]
fn metrics_token_file_wins_and_is_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tok");
    std::fs::write(&f, "s3cret\n").unwrap();
    let c = load(&[("CREWSHIP_METRICS_TOKEN", "env"), ("CREWSHIP_METRICS_TOKEN_FILE", f.to_str().unwrap())]).unwrap();
    assert_eq!(c.metrics.token.as_deref(), Some("s3cret"));
    assert!(load(&[("CREWSHIP_METRICS_TOKEN_FILE", "/no/such/file")]).is_err());
}

#[test]
fn every_declared_default_parses() {
    // A default is text parsed like a given value: one that does not parse
    // would fail every start, so each is tried alone here.
    for s in ALL {
        if let Shown::Value(v) = s.default {
            let c = load(&[(s.var, v)]);
            assert!(c.is_ok(), "{}={v:?}: {:?}", s.var, c.err());
        }
    }
    let vars: std::collections::BTreeSet<&str> = ALL.iter().map(|s| s.var).collect();
    assert_eq!(vars.len(), ALL.len(), "a setting is declared twice");
}

/// The README's configuration table is the declarations, row for row.
#[test]
fn the_readme_table_is_the_declarations() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("\n## Configuration\n").nth(1).expect("a Configuration section");
    let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| `")).collect();
    let declared: Vec<String> = ALL.iter().map(|s| s.readme_row()).collect();
    for (i, want) in declared.iter().enumerate() {
        assert_eq!(rows.get(i).copied(), Some(want.as_str()), "row {} of the README's table", i + 1);
    }
    assert_eq!(rows.len(), declared.len(), "the README lists settings nobody declared");
}

/// The OpenTelemetry variables as the environment specification reads
/// them: the signal's endpoint as written, else the base with `/v1/traces`.
#[test]
fn trace_export_is_configured_like_an_sdk() {
    let off = load(&[("HOME", "/h")]).unwrap().traces;
    assert_eq!(off.url, None);
    assert!(!off.gzip);
    assert_eq!(off.service_name, "crewshipd");
    assert_eq!(off.sampler, crate::otel::Sampler::default());
    let base = load(&[("HOME", "/h"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).unwrap().traces;
    assert_eq!(base.url.as_deref(), Some("http://collector:4318/v1/traces"));
    let both = load(&[
        ("HOME", "/h"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other:9999/custom"),
        ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-resource,team=a%2Cb"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20x, x-y = z"),
    ])
    .unwrap()
    .traces;
    assert_eq!(both.url.as_deref(), Some("http://other:9999/custom"));
    assert_eq!(both.service_name, "from-resource");
    assert_eq!(both.resource, vec![("team".to_string(), "a,b".to_string())]);
    assert_eq!(both.headers, vec![("authorization".into(), "Bearer x".into()), ("x-y".into(), "z".into())]);
    for (var, value) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "bad header=x"),
        ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli"),
    ] {
        let e = load(&[("HOME", "/h"), (var, value)]).err().unwrap_or_else(|| panic!("{var}={value} accepted"));
        assert!(e.to_string().contains(var), "{var}: {e}");
    }
    let e = load(&[("HOME", "/h"), ("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "2")]);
    assert!(e.is_err());
}

#[test]
fn database_passwords_are_redacted_for_display() {
    assert_eq!(
        database::redact_url("postgres://app:s3cret@db:5432/crew?sslmode=disable&password=x"),
        "postgres://app:<redacted>@db:5432/crew?sslmode=disable&password=<redacted>"
    );
    assert_eq!(database::redact_url("postgres://app@db/crew"), "postgres://app@db/crew");
    assert_eq!(database::redact_url("sqlite:crewship.db"), "sqlite:crewship.db");
}
