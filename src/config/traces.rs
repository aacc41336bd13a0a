//! Trace export, configured as the OpenTelemetry environment specification
//! says: the same variables an SDK reads, with their defaults. Without an
//! endpoint nothing is exported.

use std::time::Duration;

use super::source::{ConfigError, Setting, Shown, Source, bad, http_url, positive, text};
use crate::otel::Sampler;

pub const TRACES_ENDPOINT: Setting = Setting {
    var: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    flag: None,
    default: Shown::Unset,
    help: "the OTLP/HTTP URL spans are sent to, used as written (wins over `OTEL_EXPORTER_OTLP_ENDPOINT`)",
};
pub const ENDPOINT: Setting = Setting {
    var: "OTEL_EXPORTER_OTLP_ENDPOINT",
    flag: None,
    default: Shown::Unset,
    help: "the OTLP/HTTP base URL; spans go to it with `/v1/traces` appended. Neither set: no traces",
};
pub const PROTOCOL: Setting = Setting {
    var: "OTEL_EXPORTER_OTLP_PROTOCOL",
    flag: None,
    default: Shown::Value("http/protobuf"),
    help: "the OTLP transport; `http/protobuf` is the one supported",
};
pub const HEADERS: Setting = Setting {
    var: "OTEL_EXPORTER_OTLP_HEADERS",
    flag: None,
    default: Shown::Unset,
    help: "headers of every export request, `key=value` pairs separated by commas (values percent-decoded)",
};
pub const COMPRESSION: Setting = Setting {
    var: "OTEL_EXPORTER_OTLP_COMPRESSION",
    flag: None,
    default: Shown::Value("none"),
    help: "`gzip` compresses every export request's body",
};
pub const TIMEOUT: Setting = Setting {
    var: "OTEL_EXPORTER_OTLP_TIMEOUT",
    flag: None,
    default: Shown::Value("10000"),
    help: "milliseconds an export request may take; its spans are dropped after",
};
pub const SERVICE_NAME: Setting = Setting {
    var: "OTEL_SERVICE_NAME",
    flag: None,
    default: Shown::Derived("`service.name` of `OTEL_RESOURCE_ATTRIBUTES`, else `crewshipd`"),
    help: "the `service.name` of this daemon's spans",
};
pub const RESOURCE_ATTRIBUTES: Setting = Setting {
    var: "OTEL_RESOURCE_ATTRIBUTES",
    flag: None,
    default: Shown::Unset,
    help: "more resource attributes, `key=value` pairs separated by commas",
};
pub const SAMPLER: Setting = Setting {
    var: "OTEL_TRACES_SAMPLER",
    flag: None,
    default: Shown::Value("parentbased_always_on"),
    help: "`always_on`, `always_off`, `traceidratio` or their `parentbased_` forms; runs are roots",
};
pub const SAMPLER_ARG: Setting = Setting {
    var: "OTEL_TRACES_SAMPLER_ARG",
    flag: None,
    default: Shown::Unset,
    help: "the ratio (0 to 1) of the `traceidratio` samplers; 1 when unset",
};
pub const QUEUE: Setting = Setting {
    var: "OTEL_BSP_MAX_QUEUE_SIZE",
    flag: None,
    default: Shown::Value("2048"),
    help: "spans waiting for export at most; more are dropped (`crewshipd_otlp_spans_dropped_total`)",
};
pub const BATCH: Setting = Setting {
    var: "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    flag: None,
    default: Shown::Value("512"),
    help: "spans per export request at most",
};
pub const DELAY: Setting = Setting {
    var: "OTEL_BSP_SCHEDULE_DELAY",
    flag: None,
    default: Shown::Value("5000"),
    help: "milliseconds a span waits at most for its batch to fill",
};

/// Spans, and where they go.
#[derive(Debug, Clone)]
pub struct Traces {
    /// The resolved URL; None exports nothing.
    pub url: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Export bodies are gzip-compressed.
    pub gzip: bool,
    pub timeout: Duration,
    pub service_name: String,
    /// `OTEL_RESOURCE_ATTRIBUTES`, `service.name` taken out.
    pub resource: Vec<(String, String)>,
    pub sampler: Sampler,
    pub queue: usize,
    pub batch: usize,
    pub delay: Duration,
}

fn percent_decoded(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or("a % not followed by two hex digits")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-decodes to something that is not UTF-8".to_string())
}

/// `key=value,key=value`, as the specification's W3C-baggage-like lists.
fn pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').ok_or_else(|| format!("{p:?} is not key=value"))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(format!("{p:?} has no key"));
            }
            Ok((percent_decoded(k)?, percent_decoded(v.trim())?))
        })
        .collect()
}

fn headers(s: &str) -> Result<Vec<(String, String)>, String> {
    let pairs = pairs(s)?;
    for (k, v) in &pairs {
        reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("{k:?} is no header name"))?;
        reqwest::header::HeaderValue::from_str(v).map_err(|_| format!("the value of {k:?} is no header value"))?;
    }
    Ok(pairs)
}

/// An http:// URL: the exporter speaks no TLS (send to a collector on
/// this host or network, which forwards over TLS).
fn plain_http(s: &str) -> Result<String, String> {
    let url = http_url(s)?;
    if url.starts_with("https://") {
        return Err("https is not supported by this build's exporter; send to an OpenTelemetry Collector over \
                    http:// (on this host), which can forward over TLS"
            .into());
    }
    Ok(url)
}

fn millis(s: &str) -> Result<Duration, String> {
    positive::<u64>(s).map(Duration::from_millis)
}

impl Traces {
    pub(super) fn read(src: &Source<'_>) -> Result<Traces, ConfigError> {
        let url = match src.get_opt(&TRACES_ENDPOINT, plain_http)? {
            Some(url) => Some(url),
            None => src.get_opt(&ENDPOINT, plain_http)?.map(|base| format!("{base}/v1/traces")),
        };
        src.get(&PROTOCOL, |p| match p {
            "http/protobuf" => Ok(()),
            _ => Err("only http/protobuf is supported".to_string()),
        })?;
        let mut resource = src.get_opt(&RESOURCE_ATTRIBUTES, pairs)?.unwrap_or_default();
        let from_resource = resource.iter().position(|(k, _)| k == "service.name").map(|i| resource.remove(i).1);
        let service_name = src.get_opt(&SERVICE_NAME, text)?.or(from_resource).unwrap_or_else(|| "crewshipd".into());
        let arg = src.given(&SAMPLER_ARG);
        let sampler = src.get(&SAMPLER, |s| Sampler::parse(s, arg.as_ref().map(|(v, _)| v.as_str())))?;
        let batch = src.get(&BATCH, positive::<usize>)?;
        let queue = src.get(&QUEUE, positive::<usize>)?;
        if batch > queue {
            return Err(bad(BATCH.var, &batch.to_string(), format!("must not exceed {} ({queue})", QUEUE.var)));
        }
        Ok(Traces {
            url,
            headers: src.get_opt(&HEADERS, headers)?.unwrap_or_default(),
            gzip: src.get(&COMPRESSION, |c| match c {
                "gzip" => Ok(true),
                "none" => Ok(false),
                _ => Err("expected gzip or none".to_string()),
            })?,
            timeout: src.get(&TIMEOUT, millis)?,
            service_name,
            resource,
            sampler,
            queue,
            batch,
            delay: src.get(&DELAY, millis)?,
        })
    }
}
