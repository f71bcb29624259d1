//! Why handlebars refuses a template, in the words of whoever wrote it. Handlebars names the
//! grammar rule it expected (`expected escape, expression, html_expression, ...`) at the place
//! where it gave up, often the end of the file; the author needs the block that is never closed,
//! and the line it was opened on.

use handlebars::{TemplateError, TemplateErrorReason};

/// What is wrong with a template, and on which of its lines (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxProblem {
    pub line: Option<usize>,
    pub message: String,
}

/// Explains `error`, which handlebars raised compiling `source`. The blocks and tags of the
/// source are followed first: an unclosed or mismatched block is told with the line it was
/// opened on, unless handlebars stopped at an earlier line for another reason.
pub fn explain(source: &str, error: &TemplateError) -> SyntaxProblem {
    let at = error.pos();
    if let Some(found) = unbalanced(source)
        && at.is_none_or(|(line, _)| found.line.is_some_and(|l| l <= line))
    {
        return found;
    }
    let message = match error.reason() {
        TemplateErrorReason::MismatchingClosedHelper(open, close) => {
            format!("the block {{{{#{open}}}}} is closed by {{{{/{close}}}}}")
        }
        TemplateErrorReason::MismatchingClosedDecorator(open, close) => {
            format!("the block {{{{#*{open}}}}} is closed by {{{{/{close}}}}}")
        }
        TemplateErrorReason::InvalidSyntax(_) => {
            match at.map(|(line, column)| (expression_at(source, line, column), column)) {
                Some((expression, column)) if expression != quoted("") => {
                    format!("{expression} is not a valid expression (column {column})")
                }
                Some(_) => "the template ends in the middle of an expression".to_string(),
                None => "not valid handlebars".to_string(),
            }
        }
        TemplateErrorReason::InvalidParam(param) => format!("invalid parameter {param}"),
        TemplateErrorReason::NestedSubexpression => {
            "a subexpression inside a subexpression is not supported".to_string()
        }
        other => other.to_string(),
    };
    SyntaxProblem {
        line: at.map(|(line, _)| line),
        message,
    }
}

/// The tag around `column` (from 1) of `line`: from the last `{{` before it to the next `}}`.
fn expression_at(source: &str, line: usize, column: usize) -> String {
    let text: Vec<char> = source
        .lines()
        .nth(line.saturating_sub(1))
        .unwrap_or_default()
        .chars()
        .collect();
    let before: String = text.iter().take(column.saturating_sub(1)).collect();
    let start = before
        .rfind("{{")
        .map_or(0, |i| before[..i].chars().count());
    let from: String = text[start.min(text.len())..].iter().collect();
    match from.find("}}") {
        Some(end) => quoted(&from[..end + 2]),
        None => quoted(&from),
    }
}

/// Template text quoted in a message: short, and with what looks like a phone number masked, as
/// everywhere in logs.
fn quoted(text: &str) -> String {
    const MAX: usize = 60;
    let short = if text.chars().count() > MAX {
        format!("{}...", text.chars().take(MAX - 3).collect::<String>())
    } else {
        text.to_string()
    };
    crate::redact::phone_numbers(&short).into_owned()
}

/// A block opened and not yet closed.
struct Open<'a> {
    /// The opening tag without its parameters: `{{#if}}`, `{{#> layout}}`, `{{#*inline}}`.
    shown: String,
    /// What its closing tag names: `if`, `layout`, `inline`.
    name: &'a str,
    line: usize,
}

/// Line numbers of offsets into a text, asked for in increasing order: each newline is
/// counted once, however many tags the text has.
struct Lines<'a> {
    text: &'a str,
    offset: usize,
    line: usize,
}

impl Lines<'_> {
    fn at(&mut self, offset: usize) -> usize {
        self.line += self.text[self.offset..offset].matches('\n').count();
        self.offset = offset;
        self.line
    }
}

/// The first block or tag of `source` that is not closed, or closed by the wrong tag. Strings
/// inside expressions are not read, so a `}}` in one can mislead it: it only explains a
/// template that handlebars refused already.
fn unbalanced(source: &str) -> Option<SyntaxProblem> {
    let mut lines = Lines {
        text: source,
        offset: 0,
        line: 1,
    };
    let mut open: Vec<Open<'_>> = Vec::new();
    let mut from = 0;
    while let Some(start) = source[from..].find("{{").map(|i| from + i) {
        let rest = &source[start..];
        // `\{{` is text; `\\{{` is a backslash before a real tag.
        let backslashes = source[..start]
            .chars()
            .rev()
            .take_while(|c| *c == '\\')
            .count();
        if backslashes % 2 == 1 {
            from = start + 2;
            continue;
        }
        let line = lines.at(start);
        let found = |message: String| {
            Some(SyntaxProblem {
                line: Some(line),
                message,
            })
        };
        let (closing, kind) = if rest.starts_with("{{{{") {
            ("}}}}", Kind::Raw)
        } else if rest.starts_with("{{!--") {
            ("--}}", Kind::Comment)
        } else if rest.starts_with("{{!") {
            ("}}", Kind::Comment)
        } else if rest.starts_with("{{{") {
            ("}}}", Kind::Expression)
        } else {
            ("}}", Kind::Expression)
        };
        let Some(length) = rest.find(closing) else {
            let what = if kind == Kind::Comment {
                "comment"
            } else {
                "expression"
            };
            let opening = quoted(rest.lines().next().unwrap_or(rest));
            return found(format!(
                "the {what} {opening} is never closed with {closing}"
            ));
        };
        let tag = &rest[..length + closing.len()];
        from = start + tag.len();
        let inner = tag
            .trim_start_matches('{')
            .trim_end_matches('}')
            .trim_start_matches('~')
            .trim_end_matches('~')
            .trim();
        match kind {
            Kind::Comment => {}
            Kind::Raw => {
                if inner.starts_with('/') {
                    continue;
                }
                let name = first_word(inner);
                let end = format!("{{{{{{{{/{name}}}}}}}}}");
                match source[from..].find(&end) {
                    Some(at) => from += at + end.len(),
                    None => {
                        return found(format!(
                            "the raw block {{{{{{{{{name}}}}}}}}} is never closed; close it with {end}"
                        ));
                    }
                }
            }
            Kind::Expression => {
                if let Some(opened) = inner.strip_prefix('#') {
                    let (kind, rest) = match opened.chars().next() {
                        Some('>') => ("> ", &opened[1..]),
                        Some('*') => ("*", &opened[1..]),
                        _ => ("", opened),
                    };
                    let name = first_word(rest.trim_start());
                    open.push(Open {
                        shown: format!("{{{{#{kind}{name}}}}}"),
                        name,
                        line,
                    });
                } else if let Some(closed) = inner.strip_prefix('/') {
                    let closed = closed.trim();
                    let Some(block) = open.pop() else {
                        return found(format!(
                            "{{{{/{closed}}}}} closes a block that was never opened"
                        ));
                    };
                    if !closed.is_empty() && closed != block.name {
                        return found(format!(
                            "the block {} opened on line {} is closed by {{{{/{closed}}}}}; \
                             close it with {{{{/{}}}}} first",
                            block.shown, block.line, block.name
                        ));
                    }
                } else if (inner == "else" || inner.starts_with("else ") || inner == "^")
                    && open.is_empty()
                {
                    return found(format!("{{{{{inner}}}}} stands outside of any block"));
                }
            }
        }
    }
    open.pop().map(|block| SyntaxProblem {
        line: Some(source.lines().count().max(1)),
        message: format!(
            "the block {} opened on line {} is never closed; close it with {{{{/{}}}}}",
            block.shown, block.line, block.name
        ),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Expression,
    Comment,
    Raw,
}

/// The helper or partial name a tag starts with.
fn first_word(text: &str) -> &str {
    text.split(|c: char| c.is_whitespace() || c == '~' || c == '}')
        .next()
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is said about `source`, as `line N: message`.
    fn explained(source: &str) -> String {
        let mut registry = handlebars::Handlebars::new();
        let error = registry
            .register_template_string("t", source)
            .expect_err("the template must not compile");
        let problem = explain(source, &error);
        format!("line {}: {}", problem.line.unwrap_or(0), problem.message)
    }

    #[test]
    fn blocks_never_closed_are_named_with_the_line_they_were_opened_on() {
        assert_eq!(
            explained("{{status}}\n{{#if commonLabels.team}}\nteam\n"),
            "line 3: the block {{#if}} opened on line 2 is never closed; close it with {{/if}}"
        );
        assert_eq!(
            explained("{{#each alerts}}\n  {{#with labels}}{{instance}}{{/with}}"),
            "line 2: the block {{#each}} opened on line 1 is never closed; close it with {{/each}}"
        );
        assert_eq!(
            explained("{{~#unless x~}}\nno"),
            "line 2: the block {{#unless}} opened on line 1 is never closed; close it with \
             {{/unless}}"
        );
        assert_eq!(
            explained("{{#> layout}}\nbody"),
            "line 2: the block {{#> layout}} opened on line 1 is never closed; close it with \
             {{/layout}}"
        );
        assert_eq!(
            explained("{{#*inline \"part\"}}\nbody"),
            "line 2: the block {{#*inline}} opened on line 1 is never closed; close it with \
             {{/inline}}"
        );
    }

    #[test]
    fn an_escaped_backslash_leaves_the_tag_after_it_a_tag() {
        assert_eq!(
            explained("x\n\\\\{{#if a}}\n"),
            "line 2: the block {{#if}} opened on line 2 is never closed; close it with {{/if}}"
        );
    }

    #[test]
    fn a_block_closed_by_another_tag_names_both() {
        assert_eq!(
            explained("{{#each alerts}}\n{{#if labels.instance}}x\n{{/each}}\n"),
            "line 3: the block {{#if}} opened on line 2 is closed by {{/each}}; close it with \
             {{/if}} first"
        );
        assert_eq!(
            explained("{{#if a}}x{{/each}}"),
            "line 1: the block {{#if}} opened on line 1 is closed by {{/each}}; close it with \
             {{/if}} first"
        );
        assert_eq!(
            explained("x\n{{/if}}"),
            "line 2: {{/if}} closes a block that was never opened"
        );
        assert_eq!(
            explained("a\n{{else}}\nb"),
            "line 2: {{else}} stands outside of any block"
        );
    }

    #[test]
    fn tags_and_comments_never_closed() {
        assert_eq!(
            explained("FIRING {{alerts.0.labels.alertname}\n"),
            "line 1: the expression {{alerts.0.labels.alertname} is never closed with }}"
        );
        assert_eq!(
            explained("a\n{{!-- a note\nb"),
            "line 2: the comment {{!-- a note is never closed with --}}"
        );
        assert_eq!(
            explained("{{{{raw}}}} {{x}}"),
            "line 1: the raw block {{{{raw}}}} is never closed; close it with {{{{/raw}}}}"
        );
    }

    #[test]
    fn an_invalid_expression_is_shown_as_written() {
        assert_eq!(
            explained("{{status}}\n{{truncate summary max=}} rest"),
            "line 2: {{truncate summary max=}} is not a valid expression (column 24)"
        );
        assert_eq!(
            explained("{{labels.[instance}}"),
            "line 1: {{labels.[instance}} is not a valid expression (column 10)"
        );
    }

    #[test]
    fn the_first_problem_is_told_where_handlebars_stopped_earlier() {
        assert_eq!(
            explained("{{x y=}}\n{{#if a}}\nb"),
            "line 1: {{x y=}} is not a valid expression (column 7)"
        );
    }

    #[test]
    fn numbers_in_quoted_template_text_are_masked() {
        assert_eq!(
            explained("{{default x \"+4915228817386\" y=}}"),
            "line 1: {{default x \"+49*********86\" y=}} is not a valid expression (column 32)"
        );
        assert_eq!(
            explained("{{!-- call +4915228817386"),
            "line 1: the comment {{!-- call +49*********86 is never closed with --}}"
        );
    }

    #[test]
    fn escaped_tags_and_comments_are_text() {
        assert_eq!(
            explained("\\{{#if}} {{! {{#each}} }} {{!-- {{/with}} --}}\n{{#if a}}"),
            "line 2: the block {{#if}} opened on line 2 is never closed; close it with {{/if}}"
        );
    }
}
