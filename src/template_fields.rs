//! Which fields of the template data a template can read, worked out from its syntax tree at load
//! time. Building the data is most of the cost of an SMS, and a template reads a handful of the
//! fields, so only those are built. Where the tree cannot tell (partials, decorators, the whole
//! context as `this`, a `lookup` by a computed key), every field is built.

use std::collections::HashSet;

use handlebars::template::{BlockParam, HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::{Path, PathSeg};

/// The names a template may read: every named path segment, helper name and `lookup` key in it.
/// Over-counting is harmless (a field is built that is not shown); missing one would render it
/// empty, so anything unclear means every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields(Option<HashSet<String>>);

/// Built-in helpers that read fields their parameters do not name.
const IMPLIED: &[(&str, &[&str])] = &[
    // `since` measures against the render time.
    ("since", &["now"]),
    // `alertlist` prints each alert's alertname and instance label.
    ("alertlist", &["labels"]),
];

/// The syntax cannot tell what is read.
struct Opaque;

impl Fields {
    pub const ALL: Fields = Fields(None);

    pub fn of(template: &Template) -> Fields {
        let mut names = HashSet::new();
        match template_names(template, &mut names) {
            Ok(()) => Fields(Some(names)),
            Err(Opaque) => Fields::ALL,
        }
    }

    pub fn wants(&self, field: &str) -> bool {
        self.0.as_ref().is_none_or(|names| names.contains(field))
    }

    pub fn union(&self, other: &Fields) -> Fields {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Fields(Some(a.union(b).cloned().collect())),
            _ => Fields::ALL,
        }
    }
}

fn template_names(template: &Template, names: &mut HashSet<String>) -> Result<(), Opaque> {
    template
        .elements
        .iter()
        .try_for_each(|element| element_names(element, names))
}

fn element_names(element: &TemplateElement, names: &mut HashSet<String>) -> Result<(), Opaque> {
    match element {
        TemplateElement::RawString(_) | TemplateElement::Comment(_) => Ok(()),
        TemplateElement::Expression(helper)
        | TemplateElement::HtmlExpression(helper)
        | TemplateElement::HelperBlock(helper) => helper_names(helper, names),
        // Partials render other templates with this data; decorators can change it.
        _ => Err(Opaque),
    }
}

fn helper_names(helper: &HelperTemplate, names: &mut HashSet<String>) -> Result<(), Opaque> {
    parameter_names(&helper.name, names)?;
    let name = match &helper.name {
        Parameter::Name(name) => name.as_str(),
        _ => "",
    };
    for (helper_name, implied) in IMPLIED {
        if *helper_name == name {
            names.extend(implied.iter().map(|n| n.to_string()));
        }
    }
    for (index, parameter) in helper.params.iter().enumerate() {
        if name == "lookup" && index > 0 {
            match parameter {
                Parameter::Literal(serde_json::Value::String(key)) => {
                    names.insert(key.clone());
                }
                Parameter::Literal(_) => {}
                _ => return Err(Opaque),
            }
        }
        parameter_names(parameter, names)?;
    }
    for parameter in helper.hash.values() {
        parameter_names(parameter, names)?;
    }
    // `each ... as |value key|` lists the keys of whatever it walks.
    if matches!(helper.block_param, Some(BlockParam::Pair(_))) {
        return Err(Opaque);
    }
    for block in [&helper.template, &helper.inverse].into_iter().flatten() {
        template_names(block, names)?;
    }
    Ok(())
}

fn parameter_names(parameter: &Parameter, names: &mut HashSet<String>) -> Result<(), Opaque> {
    match parameter {
        Parameter::Name(name) => {
            names.insert(name.clone());
            Ok(())
        }
        Parameter::Path(Path::Relative((segments, _))) => {
            let mut named = false;
            for segment in segments {
                if let PathSeg::Named(name) = segment {
                    named = true;
                    names.insert(name.clone());
                }
            }
            // `this`, `.`, `..` or `@root` alone: a whole object, whatever it holds.
            if named { Ok(()) } else { Err(Opaque) }
        }
        // `@root` alone is the whole data; `@key` means the keys of an object are listed.
        Parameter::Path(Path::Local((_, name, _))) if name == "root" || name == "key" => {
            Err(Opaque)
        }
        // `@index`, `@key` and the like.
        Parameter::Path(Path::Local(_)) => Ok(()),
        Parameter::Literal(_) => Ok(()),
        Parameter::Subexpression(sub) => element_names(sub.as_element(), names),
        _ => Err(Opaque),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Fields {
        Fields::of(&Template::compile(text).unwrap())
    }

    #[test]
    fn paths_helpers_and_blocks_are_followed() {
        let f = fields(
            "{{#if (eq numAlerts 1)}}{{#with alerts.[0]}}{{upper status}} {{labels.alertname}}\
             {{/with}}{{else}}{{#each firing}}{{time startsAt \"%H\"}}{{/each}}{{/if}}",
        );
        for name in [
            "numAlerts",
            "alerts",
            "status",
            "labels",
            "alertname",
            "firing",
            "startsAt",
        ] {
            assert!(f.wants(name), "{name}");
        }
        for name in ["commonLabels", "groupKey", "resolved", "now", "fingerprint"] {
            assert!(!f.wants(name), "{name}");
        }
    }

    #[test]
    fn helpers_that_read_more_than_their_parameters() {
        assert!(fields("{{since startsAt}}").wants("now"));
        assert!(fields("{{alertlist firing}}").wants("labels"));
        assert!(fields("{{lookup alerts.0 \"startsAt\"}}").wants("startsAt"));
        assert!(fields("{{@root.commonLabels.alertname}}").wants("commonLabels"));
        assert!(fields("{{[commonLabels].[alertname]}}").wants("commonLabels"));
        assert!(fields("{{#each alerts}}{{@index}}{{/each}} {{x a=groupKey}}").wants("groupKey"));
    }

    #[test]
    fn whatever_cannot_be_told_means_everything() {
        for text in [
            "{{this}}",
            "{{#each commonLabels}}{{@key}}={{this}}{{/each}}",
            "{{#with alerts.[0]}}{{../this}}{{/with}}",
            "{{json @root}}",
            "{{lookup commonLabels name}}",
            "{{#each alerts.[0]}}{{@key}} {{/each}}",
            "{{#each alerts as |a|}}{{#each a as |v k|}}{{k}}={{v}}{{/each}}{{/each}}",
            "{{> other}}",
            "{{#*inline \"x\"}}{{status}}{{/inline}}",
        ] {
            assert_eq!(fields(text), Fields::ALL, "{text}");
        }
    }
}
