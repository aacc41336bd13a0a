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
/// not known yet renders as `<steps.ID.output>` (dry runs). Rendering stops
/// as soon as the text passes `limit` bytes: a template that repeats a
/// large input must never be expanded in full to be refused.
pub fn render(
    template: &str,
    inputs: &serde_json::Map<String, serde_json::Value>,
    outputs: &HashMap<String, String>,
    limit: usize,
) -> Result<String> {
    let mut out = String::with_capacity(template.len().min(limit));
    let push = |piece: &str, out: &mut String| {
        if out.len() + piece.len() > limit {
            return Err(DomainError::invalid(format!(
                "the task renders to more than {limit} bytes (CREWSHIP_MAX_TASK_BYTES)"
            )));
        }
        out.push_str(piece);
        Ok(())
    };
    for (text, r) in parse(template)? {
        push(&text, &mut out)?;
        match r {
            Some(Ref::Input(name)) => match inputs.get(&name) {
                Some(serde_json::Value::String(s)) => push(s, &mut out)?,
                Some(v) => push(&v.to_string(), &mut out)?,
                None => return Err(DomainError::invalid(format!("missing input {name:?}"))),
            },
            Some(Ref::StepOutput(id)) => match outputs.get(&id) {
                Some(s) => push(s, &mut out)?,
                None => push(&format!("<steps.{id}.output>"), &mut out)?,
            },
            None => {}
        }
    }
    Ok(out)
}

/// `render` for a pipeline step: an error names the step.
pub fn render_step(
    step_id: &str,
    template: &str,
    inputs: &serde_json::Map<String, serde_json::Value>,
    outputs: &HashMap<String, String>,
    limit: usize,
) -> Result<String> {
    render(template, inputs, outputs, limit).map_err(|e| match e {
        DomainError::Invalid(m) => DomainError::invalid(format!("step {step_id:?}: {m}")),
        other => other,
    })
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
        let t = "Write {{ inputs.n }} notes on {{inputs.topic}}: {{steps.draft.output}}";
        let s = render(t, inputs, &outputs, 1000).unwrap();
        assert_eq!(s, "Write 3 notes on tides: DRAFT");
        assert_eq!(render("{{steps.x.output}}", inputs, &HashMap::new(), 100).unwrap(), "<steps.x.output>");
        assert!(render("{{inputs.nope}}", inputs, &outputs, 100).is_err());
        // Exactly at the bound renders; one byte more does not.
        assert_eq!(render(t, inputs, &outputs, s.len()).unwrap(), s);
        assert!(render(t, inputs, &outputs, s.len() - 1).unwrap_err().to_string().contains("CREWSHIP_MAX_TASK_BYTES"));
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
