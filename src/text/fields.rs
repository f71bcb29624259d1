//! Which fields of the template data a template can read, worked out from its syntax tree at load
//! time. Building the data is most of the cost of an SMS, and a template reads a handful of the
//! fields, so only those are built. Where the tree cannot tell (partials, decorators, the whole
//! context as `this`, a `lookup` by a computed key), every field is built.

use std::collections::HashSet;

use handlebars::template::{BlockParam, HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::{Path, PathSeg};

/// Declares `Field` with the name templates use for each, and `Field::EVERY`, from one list.
macro_rules! fields {
    ($($variant:ident => $name:literal,)*) => {
        /// A field of the template data: of the message (`numAlerts`) or of an alert
        /// (`startsAt`). Names after Alertmanager's template data where it has the field.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Field {
            $($variant,)*
        }

        impl Field {
            pub const EVERY: &[Field] = &[$(Field::$variant,)*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Field::$variant => $name,)*
                }
            }
        }
    };
}

fields! {
    Status => "status",
    Receiver => "receiver",
    GroupKey => "groupKey",
    ExternalUrl => "externalURL",
    Route => "route",
    Recipient => "recipient",
    NumFiring => "numFiring",
    NumResolved => "numResolved",
    NumAlerts => "numAlerts",
    GroupLabels => "groupLabels",
    CommonLabels => "commonLabels",
    CommonAnnotations => "commonAnnotations",
    TruncatedAlerts => "truncatedAlerts",
    OrgId => "orgId",
    Title => "title",
    State => "state",
    Message => "message",
    Source => "source",
    Now => "now",
    Alerts => "alerts",
    Firing => "firing",
    Resolved => "resolved",
    Omitted => "omitted",
    Labels => "labels",
    Annotations => "annotations",
    StartsAt => "startsAt",
    EndsAt => "endsAt",
    GeneratorUrl => "generatorURL",
    Fingerprint => "fingerprint",
    Values => "values",
    ValueString => "valueString",
    SilenceUrl => "silenceURL",
    DashboardUrl => "dashboardURL",
    PanelUrl => "panelURL",
}

// One bit each in `Fields`.
const _: () = assert!(Field::EVERY.len() <= 64);

impl Field {
    fn bit(self) -> u64 {
        1 << self as u32
    }
}

/// The fields a template may read: those named by a path segment, helper name or `lookup` key in
/// it. Over-counting is harmless (a field is built that is not shown); missing one would render
/// it empty, so anything unclear means every field. A bit set, since it is asked for every field
/// of every SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields(u64);

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
    pub const ALL: Fields = Fields(u64::MAX);

    pub fn of(template: &Template) -> Fields {
        let mut names = HashSet::new();
        match template_names(template, &mut names) {
            Ok(()) => Fields(
                Field::EVERY
                    .iter()
                    .filter(|field| names.contains(field.name()))
                    .fold(0, |bits, field| bits | field.bit()),
            ),
            Err(Opaque) => Fields::ALL,
        }
    }

    pub fn wants(&self, field: Field) -> bool {
        self.0 & field.bit() != 0
    }

    pub fn union(&self, other: &Fields) -> Fields {
        Fields(self.0 | other.0)
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
        for field in [
            Field::NumAlerts,
            Field::Alerts,
            Field::Status,
            Field::Labels,
            Field::Firing,
            Field::StartsAt,
        ] {
            assert!(f.wants(field), "{field:?}");
        }
        for field in [
            Field::CommonLabels,
            Field::GroupKey,
            Field::Resolved,
            Field::Now,
            Field::Fingerprint,
        ] {
            assert!(!f.wants(field), "{field:?}");
        }
    }

    #[test]
    fn every_field_has_its_own_name_and_bit() {
        let names: HashSet<&str> = Field::EVERY.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), Field::EVERY.len());
        for (index, field) in Field::EVERY.iter().enumerate() {
            assert_eq!(*field as usize, index, "{field:?}");
            let only = fields(&format!("{{{{{}}}}}", field.name()));
            for &other in Field::EVERY {
                assert_eq!(only.wants(other), other == *field, "{field:?} {other:?}");
            }
        }
    }

    #[test]
    fn helpers_that_read_more_than_their_parameters() {
        assert!(fields("{{since startsAt}}").wants(Field::Now));
        assert!(fields("{{alertlist firing}}").wants(Field::Labels));
        assert!(fields("{{lookup alerts.0 \"startsAt\"}}").wants(Field::StartsAt));
        assert!(fields("{{@root.commonLabels.alertname}}").wants(Field::CommonLabels));
        assert!(fields("{{[commonLabels].[alertname]}}").wants(Field::CommonLabels));
        assert!(
            fields("{{#each alerts}}{{@index}}{{/each}} {{x a=groupKey}}").wants(Field::GroupKey)
        );
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
