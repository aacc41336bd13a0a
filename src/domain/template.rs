//! Pipeline step templates: `{{inputs.NAME}}` and `{{steps.ID.output}}`.

use std::collections::HashMap;

use super::{DomainError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    Input(String),
    StepOutput(String),
}

/// Splits a template into literal text and references.
fn parse(template: &str) -> Result<Vec<(String, Option<Ref>)>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| DomainError::invalid("template has an unclosed {{"))?;
        let expr = after[..end].trim();
        let r = if let Some(name) = expr.strip_prefix("inputs.") {
            Ref::Input(name.to_string())
        } else if let Some(id) = expr.strip_prefix("steps.").and_then(|s| s.strip_suffix(".output")) {
            Ref::StepOutput(id.to_string())
        } else {
            return Err(DomainError::invalid(format!(
                "unknown placeholder {{{{{expr}}}}}: use {{{{inputs.NAME}}}} or {{{{steps.ID.output}}}}"
            )));
        };
        if matches!(&r, Ref::Input(n) | Ref::StepOutput(n) if n.is_empty()) {
            return Err(DomainError::invalid(format!("empty name in placeholder {{{{{expr}}}}}")));
        }
        parts.push((rest[..start].to_string(), Some(r)));
        rest = &after[end + 2..];
    }
    parts.push((rest.to_string(), None));
    Ok(parts)
}

pub fn references(template: &str) -> Result<Vec<Ref>> {
    Ok(parse(template)?.into_iter().filter_map(|(_, r)| r).collect())
}

/// Renders a template. Missing inputs are an error; a step output that is
/// not known yet renders as `<steps.ID.output>` (dry runs).
pub fn render(
    template: &str,
    inputs: &serde_json::Map<String, serde_json::Value>,
    outputs: &HashMap<String, String>,
) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    for (text, r) in parse(template)? {
        out.push_str(&text);
        match r {
            Some(Ref::Input(name)) => match inputs.get(&name) {
                Some(serde_json::Value::String(s)) => out.push_str(s),
                Some(v) => out.push_str(&v.to_string()),
                None => return Err(DomainError::invalid(format!("missing input {name:?}"))),
            },
            Some(Ref::StepOutput(id)) => match outputs.get(&id) {
                Some(s) => out.push_str(s),
                None => out.push_str(&format!("<steps.{id}.output>")),
            },
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_inputs_and_outputs() {
        let inputs = serde_json::json!({"topic": "tides", "n": 3});
        let inputs = inputs.as_object().unwrap();
        let mut outputs = HashMap::new();
        outputs.insert("draft".to_string(), "DRAFT".to_string());
        let s =
            render("Write {{ inputs.n }} notes on {{inputs.topic}}: {{steps.draft.output}}", inputs, &outputs).unwrap();
        assert_eq!(s, "Write 3 notes on tides: DRAFT");
        assert_eq!(render("{{steps.x.output}}", inputs, &HashMap::new()).unwrap(), "<steps.x.output>");
        assert!(render("{{inputs.nope}}", inputs, &outputs).is_err());
    }

    #[test]
    fn rejects_bad_placeholders() {
        assert!(references("{{ whatever }}").is_err());
        assert!(references("{{inputs.a").is_err());
        assert!(references("{{inputs.}}").is_err());
        assert_eq!(
            references("{{inputs.a}} {{steps.b.output}}").unwrap(),
            vec![Ref::Input("a".into()), Ref::StepOutput("b".into())]
        );
    }
}
