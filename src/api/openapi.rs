//! GET /api/v1/openapi.json: the API's OpenAPI 3.1 description. The router
//! collects it from the handlers' own annotations and types as it mounts
//! them (utoipa-axum), so no route exists without its description; this
//! module adds what the layers around the handlers do: the bearer token, and
//! the error answers they can give.

use axum::Extension;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::link::{Link, LinkBuilder};
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, Required, Response, ResponseBuilder};

use super::error::ErrorBody;

/// Where the API's own routes are mounted.
pub const PREFIX: &str = "/api/v1";
const SCHEME: &str = "api_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "crewshipd",
        description = "The control-plane API of crewshipd: crews of AI agents, their work queue, runs, \
                       pipelines, journal and LLM cost ledger. docs/api.md has an example of every call.",
        license(name = "Apache-2.0")
    ),
    components(schemas(ErrorBody))
)]
struct Base;

/// The finished document, serialized once when the router is built.
#[derive(Clone)]
pub struct Document(Bytes);

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses(
    (status = 200, description = "The OpenAPI 3.1 description of this API", body = Object),
))]
pub async fn serve(Extension(doc): Extension<Document>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], doc.0)
}

/// The whole description: `v1` (what the router collected under
/// [`PREFIX`]) inside `outer` (the routes beside it), completed.
pub fn finish(v1: utoipa::openapi::OpenApi, outer: utoipa::openapi::OpenApi) -> Document {
    let mut doc = Base::openapi().merge_from(outer).nest(PREFIX, v1);
    doc.components.get_or_insert_default().add_security_scheme(
        SCHEME,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "CREWSHIP_API_TOKEN, or the data dir's api-token file; a run's CREWSHIP_RUN_TOKEN for its \
                     own calls",
                ))
                .build(),
        ),
    );
    // An empty body reads as `{}` (`extract::JsonBody`): a body none of
    // whose fields is required may be left out.
    let all_optional: Vec<String> = doc
        .components
        .iter()
        .flat_map(|c| &c.schemas)
        .filter(|(_, s)| matches!(s, RefOr::T(Schema::Object(o)) if o.required.is_empty()))
        .map(|(name, _)| format!("#/components/schemas/{name}"))
        .collect();
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in operations(item) {
            complete(path, method, op);
            if let Some(RefOr::T(body)) = &mut op.request_body {
                let json = body.content.values().filter_map(|c| match c {
                    RefOr::T(c) => c.schema.as_ref(),
                    RefOr::Ref(_) => None,
                });
                if json.into_iter().any(|s| matches!(s, RefOr::Ref(r) if all_optional.contains(&r.ref_location))) {
                    body.required = Some(Required::False);
                }
            }
        }
    }
    link_created_entities(&mut doc);
    Document(serde_json::to_vec(&doc).expect("an OpenAPI document serializes").into())
}

/// An operation, as far as links go.
struct Op {
    path: String,
    id: String,
    params: Vec<String>,
    /// The schema its 201 and its 200 answer with, if it is a `$ref`.
    created: Option<String>,
    read: Option<String>,
}

fn body_ref(op: &Operation, status: &str) -> Option<String> {
    let RefOr::T(r) = op.responses.responses.get(status)? else { return None };
    match r.content.get("application/json")? {
        RefOr::T(c) => match c.schema.as_ref()? {
            RefOr::Ref(r) => Some(r.ref_location.clone()),
            RefOr::T(_) => None,
        },
        RefOr::Ref(_) => None,
    }
}

/// Links from every answer that creates an entity (a 201) to the operations
/// on that entity: those under the path whose GET reads the same schema back
/// (`POST /crews` to `/crews/{crew}` and what is under it). The entity's id
/// fills the path parameter the creating request's path lacks; the others
/// come from that path.
fn link_created_entities(doc: &mut utoipa::openapi::OpenApi) {
    let mut ops = Vec::new();
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in operations(item) {
            let params = op
                .parameters
                .iter()
                .flatten()
                .filter_map(|p| match p {
                    RefOr::T(p) if p.parameter_in == ParameterIn::Path => Some(p.name.clone()),
                    _ => None,
                })
                .collect();
            let read = if method == "get" { body_ref(op, "200") } else { None };
            let id = op.operation_id.clone().unwrap_or_default();
            ops.push(Op { path: path.clone(), id, params, created: body_ref(op, "201"), read });
        }
    }
    let mut links: Vec<(String, String, Link)> = Vec::new();
    for creator in &ops {
        let Some(created) = &creator.created else { continue };
        for entity in ops.iter().filter(|o| o.read.as_ref() == Some(created)) {
            let new: Vec<&String> = entity.params.iter().filter(|p| !creator.params.contains(p)).collect();
            if new.len() != 1 {
                continue;
            }
            let under = |o: &&Op| o.path == entity.path || o.path.starts_with(&format!("{}/", entity.path));
            for target in ops.iter().filter(under).filter(|o| o.params == entity.params) {
                let mut link = LinkBuilder::new().operation_id(&target.id);
                for p in &entity.params {
                    let from =
                        if p == new[0] { "$response.body#/id".to_string() } else { format!("$request.path.{p}") };
                    link = link.parameter(p, from);
                }
                links.push((creator.path.clone(), target.id.clone(), link.build()));
            }
        }
    }
    for (path, name, link) in links {
        let Some(item) = doc.paths.paths.get_mut(&path) else { continue };
        if let Some(RefOr::T(created)) = item.post.as_mut().and_then(|op| op.responses.responses.get_mut("201")) {
            created.links.insert(name, RefOr::T(link));
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("patch", &mut item.patch),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
}

/// A unique operation id, the gate's security, and the error answers the
/// layers and extractors give (`error::ApiError`, `extract`, `auth`,
/// `inflight`), each with the error body.
fn complete(path: &str, method: &str, op: &mut Operation) {
    let words: Vec<&str> = path
        .split('/')
        .filter(|w| !w.is_empty() && *w != "api" && *w != "v1")
        .map(|w| w.trim_matches(['{', '}']))
        .collect();
    op.operation_id = Some(format!("{method}_{}", words.join("_").replace(['-', '.'], "_")));
    let mut errors = vec![(503, "The store is unavailable or overloaded; retry after Retry-After seconds")];
    if path.starts_with(PREFIX) {
        op.security = Some(vec![SecurityRequirement::new(SCHEME, Vec::<String>::new())]);
        errors.push((401, "No token, or a wrong one"));
        errors.push((403, "A cross-site Origin, or a run token outside its scope"));
    }
    let has = |place: ParameterIn| {
        op.parameters.iter().flatten().any(|p| matches!(p, RefOr::T(p) if p.parameter_in == place))
    };
    if has(ParameterIn::Path) {
        errors.push((400, "A path segment that is not valid UTF-8"));
        errors.push((404, "Nothing has this id or slug"));
    }
    if has(ParameterIn::Query) {
        errors.push((400, "A query string that does not decode"));
        errors.push((422, "A parameter out of its range or set"));
    }
    if op.request_body.is_some() {
        errors.push((400, "Malformed JSON, or a field of the wrong type"));
        errors.push((408, "The body did not arrive within CREWSHIP_HTTP_BODY_TIMEOUT"));
        errors.push((413, "The body is over CREWSHIP_HTTP_BODY_LIMIT"));
        errors.push((415, "The body is not application/json"));
        errors.push((422, "Well-formed but invalid: a rule of the body, or an unknown crew or agent"));
    }
    let responses = &mut op.responses.responses;
    for (status, description) in errors {
        responses.entry(status.to_string()).or_insert_with(|| ResponseBuilder::new().description(description).into());
    }
    for (status, response) in responses.iter_mut() {
        if let RefOr::T(r) = response
            && !status.starts_with(['1', '2', '3'])
            && r.content.is_empty()
        {
            with_error_body(r, status == "503");
        }
    }
}

fn with_error_body(r: &mut Response, retry_after: bool) {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    r.content.insert("application/json".into(), RefOr::T(content));
    if retry_after {
        let seconds = HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
            .description(Some("Seconds to wait before retrying"))
            .build();
        r.headers.insert("Retry-After".into(), RefOr::T(seconds));
    }
}
