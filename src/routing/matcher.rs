//! Alertmanager label matchers (`severity="critical"`, `team=~"ops|dev"`, ...).
//!
//! Mirrors Alertmanager's default "fallback" parsing mode so that routing
//! entries copied from an Alertmanager config behave the same here: the
//! UTF-8 matcher grammar is tried first and the classic (≤0.26) syntax is
//! accepted when that fails.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

/// Comparison applied between a label's value and the matcher's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    RegexMatch,
    RegexNoMatch,
}

impl MatchOp {
    /// The operator as written in a matcher expression.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        }
    }

    fn is_regex(self) -> bool {
        matches!(self, MatchOp::RegexMatch | MatchOp::RegexNoMatch)
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors are meant for someone editing a YAML config, so they quote the
/// offending entry and say what was expected where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    /// `offset` counts characters (not bytes) from 0 within `input`.
    #[error("invalid matcher {input:?}: {message} (at character offset {offset})")]
    Syntax {
        input: String,
        offset: usize,
        message: String,
    },
    #[error("invalid matcher {matcher:?}: bad regex: {reason}")]
    BadRegex { matcher: String, reason: String },
    #[error("invalid matcher: label name must not be empty")]
    EmptyLabelName,
}

/// One `name op value` condition on an alert's labels.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    /// Compiled once up front so matching never fails at alert time.
    regex: Option<Regex>,
}

impl Matcher {
    /// Regexes are anchored on both ends, like Alertmanager/Prometheus.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let name = name.into();
        let value = value.into();
        if name.is_empty() {
            return Err(MatcherError::EmptyLabelName);
        }
        let regex = if op.is_regex() {
            match Regex::new(&format!("^(?:{value})$")) {
                Ok(re) => Some(re),
                Err(err) => {
                    let mut matcher = String::new();
                    // Writing into a String cannot fail.
                    let _ = write_matcher(&mut matcher, &name, op, &value);
                    return Err(MatcherError::BadRegex {
                        matcher,
                        reason: describe_regex_error(&err),
                    });
                }
            }
        } else {
            None
        };
        Ok(Matcher {
            name,
            op,
            value,
            regex,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn op(&self) -> MatchOp {
        self.op
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// A missing label counts as the empty string, as in Alertmanager, so
    /// `team!="a"` also selects alerts without a `team` label.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let actual = labels.get(&self.name).map_or("", String::as_str);
        match self.op {
            MatchOp::Equal => actual == self.value,
            MatchOp::NotEqual => actual != self.value,
            MatchOp::RegexMatch => self.regex.as_ref().is_some_and(|re| re.is_match(actual)),
            MatchOp::RegexNoMatch => !self.regex.as_ref().is_some_and(|re| re.is_match(actual)),
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl fmt::Display for Matcher {
    /// Canonical form that [`parse_matchers`] reads back to an equal matcher.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_matcher(f, &self.name, self.op, &self.value)
    }
}

/// True when every matcher matches; an empty list selects everything.
pub fn matches_all(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// Parses one config entry such as `{severity="critical", team=~"ops|dev"}`.
///
/// Braces and a trailing comma are optional; `""` and `"{}"` give an empty
/// list. Entries that only the classic syntax accepts (`foo=`, `foo=bar baz`)
/// are accepted too; when neither syntax fits, the UTF-8 parser's error is
/// returned because it is the more precise one.
pub fn parse_matchers(input: &str) -> Result<Vec<Matcher>, MatcherError> {
    match parse_utf8(input) {
        Ok(matchers) => Ok(matchers),
        Err(err) => parse_classic(input).ok_or(err),
    }
}

fn write_matcher(out: &mut impl fmt::Write, name: &str, op: MatchOp, value: &str) -> fmt::Result {
    if is_classic_label_name(name) {
        out.write_str(name)?;
    } else {
        write_quoted(out, name)?;
    }
    out.write_str(op.as_str())?;
    write_quoted(out, value)
}

/// Go-style double-quoted string that [`unescape_go`] turns back into `s`.
fn write_quoted(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            '\u{7}' => out.write_str("\\a")?,
            '\u{8}' => out.write_str("\\b")?,
            '\u{c}' => out.write_str("\\f")?,
            '\u{b}' => out.write_str("\\v")?,
            // Escape invisible characters so log lines show what is really there.
            c if c.is_control() || is_invisible_format_char(c) => {
                let code = u32::from(c);
                if code <= 0xFFFF {
                    write!(out, "\\u{code:04x}")?;
                } else {
                    write!(out, "\\U{code:08x}")?;
                }
            }
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

fn is_invisible_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{feff}'
    )
}

fn is_classic_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The regex crate's syntax errors span several lines with an ASCII-art
/// pointer into our wrapped pattern; one line reads better in logs.
fn describe_regex_error(err: &regex::Error) -> String {
    match err {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|line| line.trim().strip_prefix("error:"))
            .map(|msg| msg.trim().to_owned())
            .unwrap_or_else(|| {
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------
// UTF-8 grammar (Alertmanager ≥0.27)
// ---------------------------------------------------------------------------

/// Longest piece of input quoted inside an error message.
const MAX_QUOTED_CHARS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenKind {
    OpenBrace,
    CloseBrace,
    Comma,
    Op(MatchOp),
    Quoted(String),
    Unquoted(String),
}

/// `start`/`end` are character offsets into the input.
#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    start: usize,
    end: usize,
}

/// Works on a char vector so offsets are character counts and no byte
/// slicing can land inside a multi-byte character.
struct Lexer<'a> {
    input: &'a str,
    chars: Vec<char>,
    pos: usize,
}

fn is_reserved(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '{' | '}' | '!' | '=' | '~' | ',' | '\\' | '"' | '\'' | '`'
        )
}

impl<'a> Lexer<'a> {
    fn new(input: &'a str) -> Self {
        Lexer {
            input,
            chars: input.chars().collect(),
            pos: 0,
        }
    }

    fn char_at(&self, i: usize) -> Option<char> {
        self.chars.get(i).copied()
    }

    fn text(&self, start: usize, end: usize) -> String {
        self.chars
            .get(start..end.min(self.chars.len()))
            .unwrap_or_default()
            .iter()
            .collect()
    }

    /// Token text shortened for messages.
    fn excerpt(&self, start: usize, end: usize) -> String {
        let len = end.saturating_sub(start);
        if len > MAX_QUOTED_CHARS {
            let mut s = self.text(start, start + MAX_QUOTED_CHARS);
            s.push('…');
            s
        } else {
            self.text(start, end)
        }
    }

    fn describe(&self, tok: &Token) -> String {
        format!("{:?}", self.excerpt(tok.start, tok.end))
    }

    fn error_at(&self, offset: usize, message: impl Into<String>) -> MatcherError {
        MatcherError::Syntax {
            input: self.input.to_owned(),
            offset,
            message: message.into(),
        }
    }

    fn error_at_end(&self, expected: &str) -> MatcherError {
        let trimmed = self.input.trim_end();
        let count = trimmed.chars().count();
        let tail = if count > MAX_QUOTED_CHARS {
            let mut s = String::from("…");
            s.extend(trimmed.chars().skip(count - MAX_QUOTED_CHARS));
            s
        } else {
            trimmed.to_owned()
        };
        self.error_at(
            self.chars.len(),
            format!("unexpected end of input after {tail:?}: {expected}"),
        )
    }

    fn next_token(&mut self) -> Result<Option<Token>, MatcherError> {
        while self.char_at(self.pos).is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(c) = self.char_at(start) else {
            return Ok(None);
        };
        let next = self.char_at(start + 1);
        let (kind, len) = match c {
            '{' => (TokenKind::OpenBrace, 1),
            '}' => (TokenKind::CloseBrace, 1),
            ',' => (TokenKind::Comma, 1),
            '=' if next == Some('~') => (TokenKind::Op(MatchOp::RegexMatch), 2),
            '=' => (TokenKind::Op(MatchOp::Equal), 1),
            '!' if next == Some('=') => (TokenKind::Op(MatchOp::NotEqual), 2),
            '!' if next == Some('~') => (TokenKind::Op(MatchOp::RegexNoMatch), 2),
            '!' => {
                return Err(self.error_at(start, "unexpected \"!\": expected \"!=\" or \"!~\""));
            }
            '~' => {
                return Err(self.error_at(start, "unexpected \"~\": expected \"=~\" or \"!~\""));
            }
            '"' => return self.quoted(start).map(Some),
            '\\' => {
                return Err(self.error_at(
                    start,
                    "unexpected \"\\\": a backslash is only allowed inside a double-quoted \
                     string, where it must be doubled (e.g. foo=~\"\\\\d+\")",
                ));
            }
            '\'' | '`' => {
                return Err(self.error_at(
                    start,
                    format!("unexpected {c:?}: quote names and values with double quotes (\")"),
                ));
            }
            _ => {
                let mut end = start;
                while self.char_at(end).is_some_and(|c| !is_reserved(c)) {
                    end += 1;
                }
                (TokenKind::Unquoted(self.text(start, end)), end - start)
            }
        };
        self.pos = start + len;
        Ok(Some(Token {
            kind,
            start,
            end: self.pos,
        }))
    }

    /// `start` is the offset of the opening double quote.
    fn quoted(&mut self, start: usize) -> Result<Token, MatcherError> {
        let mut i = start + 1;
        loop {
            match self.char_at(i) {
                None => {
                    let shown = self.excerpt(start, self.chars.len());
                    return Err(self.error_at(
                        start,
                        format!("unterminated quoted string {shown:?}: expected a closing '\"'"),
                    ));
                }
                Some('\\') => i += 2,
                Some('"') => break,
                Some(_) => i += 1,
            }
        }
        let body = self.chars.get(start + 1..i).unwrap_or_default();
        let value = unescape_go(body).map_err(|(rel, msg)| self.error_at(start + 1 + rel, msg))?;
        self.pos = i + 1;
        Ok(Token {
            kind: TokenKind::Quoted(value),
            start,
            end: self.pos,
        })
    }
}

/// Reads `count` digits in `radix` starting at `start`.
fn read_digits(chars: &[char], start: usize, count: usize, radix: u32) -> Option<u32> {
    let mut value: u32 = 0;
    for k in 0..count {
        let digit = chars.get(start + k)?.to_digit(radix)?;
        value = value.checked_mul(radix)?.checked_add(digit)?;
    }
    Some(value)
}

/// Go string-literal unescaping (as `strconv.Unquote` does for `"…"`).
/// `\x` and octal escapes yield raw bytes, so the result is checked for UTF-8
/// at the end. Errors carry the character offset within `body`.
fn unescape_go(body: &[char]) -> Result<String, (usize, String)> {
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut buf = [0u8; 4];
    let mut i = 0;
    while let Some(&c) = body.get(i) {
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            i += 1;
            continue;
        }
        let Some(&escape) = body.get(i + 1) else {
            return Err((i, "quoted string ends with a lone backslash".to_owned()));
        };
        let simple = match escape {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            i += 2;
            continue;
        }
        match escape {
            'x' => {
                let byte = read_digits(body, i + 2, 2, 16)
                    .and_then(|v| u8::try_from(v).ok())
                    .ok_or_else(|| {
                        (
                            i,
                            "invalid escape: \\x must be followed by two hex digits".to_owned(),
                        )
                    })?;
                out.push(byte);
                i += 4;
            }
            '0'..='7' => {
                let byte = read_digits(body, i + 1, 3, 8)
                    .and_then(|v| u8::try_from(v).ok())
                    .ok_or_else(|| {
                        (
                            i,
                            "invalid octal escape: expected three octal digits \\000 to \\377"
                                .to_owned(),
                        )
                    })?;
                out.push(byte);
                i += 4;
            }
            'u' | 'U' => {
                let digits = if escape == 'u' { 4 } else { 8 };
                let ch = read_digits(body, i + 2, digits, 16)
                    .and_then(char::from_u32)
                    .ok_or_else(|| {
                        (
                            i,
                            format!(
                                "invalid escape: \\{escape} must be followed by {digits} hex \
                                 digits naming a Unicode character"
                            ),
                        )
                    })?;
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += 2 + digits;
            }
            other => {
                return Err((
                    i,
                    format!(
                        "invalid escape sequence \\{other} in quoted string (to get a literal \
                         backslash, e.g. in a regex, write it twice: \"\\\\d+\")"
                    ),
                ));
            }
        }
    }
    String::from_utf8(out).map_err(|_| {
        (
            0,
            "quoted string is not valid UTF-8 after unescaping its \\x/octal escapes".to_owned(),
        )
    })
}

fn parse_utf8(input: &str) -> Result<Vec<Matcher>, MatcherError> {
    let mut lexer = Lexer::new(input);
    let mut matchers = Vec::new();
    let mut tok = lexer.next_token()?;
    let open_brace = match &tok {
        Some(t) if t.kind == TokenKind::OpenBrace => Some(t.start),
        _ => None,
    };
    if open_brace.is_some() {
        tok = lexer.next_token()?;
    }
    loop {
        let Some(t) = tok else {
            return match open_brace {
                Some(at) => Err(lexer.error_at_end(&format!(
                    "expected close brace \"}}\" to match the \"{{\" at character offset {at}"
                ))),
                None => Ok(matchers),
            };
        };
        match &t.kind {
            TokenKind::CloseBrace => {
                if open_brace.is_none() {
                    return Err(lexer.error_at(
                        t.start,
                        "unexpected \"}\": expected opening brace \"{\" at the start of the \
                         input to match it",
                    ));
                }
                if let Some(extra) = lexer.next_token()? {
                    return Err(lexer.error_at(
                        extra.start,
                        format!(
                            "unexpected {} after the closing brace: expected end of input",
                            lexer.describe(&extra)
                        ),
                    ));
                }
                return Ok(matchers);
            }
            TokenKind::Quoted(_) | TokenKind::Unquoted(_) => {
                matchers.push(parse_one(&mut lexer, &t)?);
                tok = lexer.next_token()?;
                match &tok {
                    None => {}
                    Some(next) => match next.kind {
                        TokenKind::CloseBrace => {}
                        TokenKind::Comma => tok = lexer.next_token()?,
                        _ => {
                            let expected = if open_brace.is_some() {
                                "\",\" between matchers or \"}\""
                            } else {
                                "\",\" between matchers or end of input"
                            };
                            return Err(lexer.error_at(
                                next.start,
                                format!(
                                    "unexpected {}: expected {expected} (quote values containing \
                                     spaces or special characters)",
                                    lexer.describe(next)
                                ),
                            ));
                        }
                    },
                }
            }
            _ => {
                return Err(lexer.error_at(
                    t.start,
                    format!("unexpected {}: expected a label name", lexer.describe(&t)),
                ));
            }
        }
    }
}

/// Parses `op value` after the label token has been read.
fn parse_one(lexer: &mut Lexer<'_>, label: &Token) -> Result<Matcher, MatcherError> {
    let name = match &label.kind {
        TokenKind::Quoted(s) | TokenKind::Unquoted(s) => s.clone(),
        _ => String::new(),
    };
    if name.is_empty() {
        return Err(lexer.error_at(label.start, "label name must not be empty"));
    }
    let label_text = lexer.excerpt(label.start, label.end);
    const OPERATORS: &str = "an operator (=, !=, =~ or !~)";

    let op = match lexer.next_token()? {
        None => {
            return Err(lexer.error_at_end(&format!(
                "expected {OPERATORS} after label name {label_text}"
            )));
        }
        Some(Token {
            kind: TokenKind::Op(op),
            ..
        }) => op,
        Some(other) => {
            return Err(lexer.error_at(
                other.start,
                format!(
                    "unexpected {}: expected {OPERATORS} after label name {label_text}",
                    lexer.describe(&other)
                ),
            ));
        }
    };

    let (value, end) = match lexer.next_token()? {
        None => {
            return Err(lexer.error_at_end(&format!(
                "expected a label value (write {label_text}{op}\"\" for an empty value)"
            )));
        }
        Some(Token {
            kind: TokenKind::Quoted(v) | TokenKind::Unquoted(v),
            end,
            ..
        }) => (v, end),
        Some(other) => {
            return Err(lexer.error_at(
                other.start,
                format!(
                    "unexpected {}: expected a label value after {label_text}{op} (write \
                     {label_text}{op}\"\" for an empty value)",
                    lexer.describe(&other)
                ),
            ));
        }
    };

    Matcher::new(name, op, value).map_err(|err| match err {
        MatcherError::BadRegex { reason, .. } => MatcherError::BadRegex {
            matcher: lexer.text(label.start, end),
            reason,
        },
        other => other,
    })
}

// ---------------------------------------------------------------------------
// Classic grammar (Alertmanager ≤0.26), used as a fallback
// ---------------------------------------------------------------------------

/// RE2's `\s`, which the classic matcher regex uses.
fn is_re2_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// `None` when the input is not valid classic syntax; the caller reports the
/// UTF-8 parser's error instead, so no message is built here.
fn parse_classic(input: &str) -> Option<Vec<Matcher>> {
    let s = input.strip_prefix('{').unwrap_or(input);
    let s = s.strip_suffix('}').unwrap_or(s);

    let mut tokens = Vec::new();
    let mut token = String::new();
    let mut inside_quotes = false;
    let mut escaped = false;
    for c in s.chars() {
        match c {
            ',' if !inside_quotes => {
                tokens.push(std::mem::take(&mut token));
                continue;
            }
            ',' => {}
            '"' => {
                if escaped {
                    escaped = false;
                } else {
                    inside_quotes = !inside_quotes;
                }
            }
            '\\' => escaped = !escaped,
            _ => escaped = false,
        }
        token.push(c);
    }
    let last = token.trim();
    if !last.is_empty() {
        tokens.push(last.to_owned());
    }
    tokens.iter().map(|t| parse_classic_one(t)).collect()
}

/// Hand-written equivalent of
/// `^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*((?s).*?)\s*$`.
fn parse_classic_one(s: &str) -> Option<Matcher> {
    let rest = s.trim_start_matches(is_re2_space);
    let name_len = rest
        .char_indices()
        .take_while(|&(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        })
        .count();
    if name_len == 0 {
        return None;
    }
    // The name is ASCII, so its char count is its byte length.
    let (name, rest) = rest.split_at_checked(name_len)?;
    let rest = rest.trim_start_matches(is_re2_space);
    let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
        (MatchOp::RegexMatch, r)
    } else if let Some(r) = rest.strip_prefix('=') {
        (MatchOp::Equal, r)
    } else if let Some(r) = rest.strip_prefix("!=") {
        (MatchOp::NotEqual, r)
    } else if let Some(r) = rest.strip_prefix("!~") {
        (MatchOp::RegexNoMatch, r)
    } else {
        return None;
    };
    let value = unescape_classic(rest.trim_matches(is_re2_space))?;
    Matcher::new(name, op, value).ok()
}

/// Classic value unquoting: only `\"`, `\\` and `\n` are escapes, any other
/// backslash is literal, which is why `foo=~"\d+"` works in this syntax.
fn unescape_classic(raw: &str) -> Option<String> {
    let (body, mut expect_quote) = match raw.strip_prefix('"') {
        Some(body) => (body, true),
        None => (raw, false),
    };
    let mut out = String::with_capacity(body.len());
    let mut escaped = false;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        let is_last = chars.peek().is_none();
        if escaped {
            escaped = false;
            match c {
                'n' => out.push('\n'),
                '"' | '\\' => out.push(c),
                _ => {
                    out.push('\\');
                    out.push(c);
                }
            }
            continue;
        }
        match c {
            '\\' if !is_last => escaped = true,
            '"' => {
                if !expect_quote || !is_last {
                    return None;
                }
                expect_quote = false;
            }
            _ => out.push(c),
        }
    }
    (!expect_quote).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn one(input: &str) -> Matcher {
        let mut ms = parse_matchers(input).unwrap();
        assert_eq!(ms.len(), 1, "expected one matcher from {input:?}: {ms:?}");
        ms.remove(0)
    }

    fn m(name: &str, op: MatchOp, value: &str) -> Matcher {
        Matcher::new(name, op, value).unwrap()
    }

    fn syntax_error(input: &str) -> (usize, String, String) {
        match parse_matchers(input) {
            Err(err @ MatcherError::Syntax { .. }) => {
                let text = err.to_string();
                let MatcherError::Syntax {
                    offset, message, ..
                } = err
                else {
                    unreachable!()
                };
                (offset, message, text)
            }
            other => panic!("expected a syntax error for {input:?}, got {other:?}"),
        }
    }

    fn utf8_syntax_error(input: &str) -> (usize, String) {
        match parse_utf8(input) {
            Err(MatcherError::Syntax {
                offset, message, ..
            }) => (offset, message),
            other => panic!("expected a UTF-8 syntax error for {input:?}, got {other:?}"),
        }
    }

    // --- operators -------------------------------------------------------

    #[test]
    fn equal_matches_only_the_exact_value() {
        let matcher = one(r#"severity="critical""#);
        assert_eq!(matcher.op(), MatchOp::Equal);
        assert!(matcher.matches(&labels(&[("severity", "critical")])));
        assert!(!matcher.matches(&labels(&[("severity", "warning")])));
        assert!(!matcher.matches(&labels(&[("severity", "critical ")])));
        assert!(!matcher.matches(&labels(&[("other", "critical")])));
    }

    #[test]
    fn not_equal_matches_other_values() {
        let matcher = one(r#"severity!="critical""#);
        assert_eq!(matcher.op(), MatchOp::NotEqual);
        assert!(matcher.matches(&labels(&[("severity", "warning")])));
        assert!(!matcher.matches(&labels(&[("severity", "critical")])));
    }

    #[test]
    fn regex_match_and_no_match() {
        let re = one(r#"team=~"ops|dev""#);
        assert_eq!(re.op(), MatchOp::RegexMatch);
        assert!(re.matches(&labels(&[("team", "ops")])));
        assert!(re.matches(&labels(&[("team", "dev")])));
        assert!(!re.matches(&labels(&[("team", "qa")])));

        let nre = one(r#"team!~"ops|dev""#);
        assert_eq!(nre.op(), MatchOp::RegexNoMatch);
        assert!(!nre.matches(&labels(&[("team", "ops")])));
        assert!(!nre.matches(&labels(&[("team", "dev")])));
        assert!(nre.matches(&labels(&[("team", "qa")])));
    }

    #[test]
    fn regexes_are_fully_anchored() {
        let crit = one(r#"severity=~"crit""#);
        assert!(crit.matches(&labels(&[("severity", "crit")])));
        assert!(!crit.matches(&labels(&[("severity", "critical")])));
        assert!(!crit.matches(&labels(&[("severity", "subcrit")])));

        let prefix = one(r#"severity=~"crit.*""#);
        assert!(prefix.matches(&labels(&[("severity", "critical")])));
        assert!(!prefix.matches(&labels(&[("severity", "subcritical")])));

        // The alternation must not escape the anchors: `^a|b$` would match "ax".
        let alt = one(r#"x=~"a|b""#);
        assert!(!alt.matches(&labels(&[("x", "ax")])));
        assert!(!alt.matches(&labels(&[("x", "xb")])));

        let not_crit = one(r#"severity!~"crit""#);
        assert!(not_crit.matches(&labels(&[("severity", "critical")])));
        assert!(!not_crit.matches(&labels(&[("severity", "crit")])));
    }

    #[test]
    fn absent_label_is_treated_as_empty_string() {
        let none = labels(&[("other", "x")]);
        assert!(one(r#"team!="a""#).matches(&none));
        assert!(one(r#"team="""#).matches(&none));
        assert!(!one(r#"team="a""#).matches(&none));
        assert!(one(r#"team=~".*""#).matches(&none));
        assert!(!one(r#"team=~".+""#).matches(&none));
        assert!(one(r#"team!~".+""#).matches(&none));
        assert!(!one(r#"team!~".*""#).matches(&none));

        // An explicitly empty label behaves the same as a missing one.
        let empty = labels(&[("team", "")]);
        assert!(one(r#"team!~".+""#).matches(&empty));
        assert!(!one(r#"team!~".+""#).matches(&labels(&[("team", "ops")])));
    }

    #[test]
    fn matches_all_ands_every_matcher() {
        let ms = parse_matchers(r#"severity="critical", team=~"ops|dev""#).unwrap();
        assert!(matches_all(
            &ms,
            &labels(&[("severity", "critical"), ("team", "ops")])
        ));
        assert!(!matches_all(
            &ms,
            &labels(&[("severity", "critical"), ("team", "qa")])
        ));
        assert!(!matches_all(
            &ms,
            &labels(&[("severity", "warning"), ("team", "ops")])
        ));
        assert!(matches_all(&[], &labels(&[])));
        assert!(matches_all(&[], &labels(&[("a", "b")])));
    }

    // --- structure ---------------------------------------------------------

    #[test]
    fn empty_inputs_give_no_matchers() {
        assert_eq!(parse_matchers("").unwrap(), vec![]);
        assert_eq!(parse_matchers("{}").unwrap(), vec![]);
        assert_eq!(parse_matchers("  { }  ").unwrap(), vec![]);
        assert_eq!(parse_matchers("   ").unwrap(), vec![]);
    }

    #[test]
    fn several_matchers_braces_and_trailing_comma() {
        let expected = vec![
            m("a", MatchOp::Equal, "1"),
            m("b", MatchOp::NotEqual, "2"),
            m("c", MatchOp::RegexMatch, "3|4"),
        ];
        for input in [
            r#"a="1",b!="2",c=~"3|4""#,
            r#"{a="1",b!="2",c=~"3|4"}"#,
            r#"{a="1",b!="2",c=~"3|4",}"#,
            r#"a="1",b!="2",c=~"3|4","#,
            r#"  {  a = "1" , b != "2" ,c =~ "3|4" , }  "#,
            "a=1,b!=2,c=~3|4",
        ] {
            assert_eq!(parse_utf8(input).unwrap(), expected, "input {input:?}");
            assert_eq!(parse_matchers(input).unwrap(), expected, "input {input:?}");
        }
    }

    #[test]
    fn unquoted_values_and_names() {
        assert_eq!(one("env=prod"), m("env", MatchOp::Equal, "prod"));
        assert_eq!(
            one("service.name=api-v2.é"),
            m("service.name", MatchOp::Equal, "api-v2.é")
        );
        assert_eq!(one("job=~node.*"), m("job", MatchOp::RegexMatch, "node.*"));
    }

    #[test]
    fn quoted_utf8_label_names() {
        assert_eq!(
            parse_utf8(r#""service.name"="api""#).unwrap(),
            vec![m("service.name", MatchOp::Equal, "api")]
        );
        assert_eq!(
            parse_utf8(r#"{"😀 team"=~"a.*", "x=y"!="z"}"#).unwrap(),
            vec![
                m("😀 team", MatchOp::RegexMatch, "a.*"),
                m("x=y", MatchOp::NotEqual, "z"),
            ]
        );
        let matcher = one(r#""k8s.io/app"="web""#);
        assert!(matcher.matches(&labels(&[("k8s.io/app", "web")])));
    }

    #[test]
    fn go_escapes_in_quoted_strings() {
        let cases: &[(&str, &str)] = &[
            (r#"x="a\"b""#, "a\"b"),
            (r#"x="a\\b""#, "a\\b"),
            (r#"x="a\nb""#, "a\nb"),
            (r#"x="a\tb""#, "a\tb"),
            (r#"x="a\rb""#, "a\rb"),
            (r#"x="\a\b\f\v""#, "\u{7}\u{8}\u{c}\u{b}"),
            (r#"x="\x41\x7e""#, "A~"),
            (r#"x="\xc3\xa9""#, "é"),
            (r#"x="\101\060""#, "A0"),
            (r#"x="\u00e9\u2603""#, "é☃"),
            (r#"x="\U0001F600""#, "😀"),
            (r#"x="""#, ""),
            (r#"x="a,b}{=~!""#, "a,b}{=~!"),
        ];
        for (input, value) in cases {
            assert_eq!(
                parse_utf8(input).unwrap(),
                vec![m("x", MatchOp::Equal, value)],
                "input {input:?}"
            );
        }
    }

    #[test]
    fn doubled_backslash_reaches_the_regex() {
        let matcher = one(r#"code=~"\\d+""#);
        assert_eq!(matcher.value(), r"\d+");
        assert!(matcher.matches(&labels(&[("code", "503")])));
        assert!(!matcher.matches(&labels(&[("code", "5x3")])));
    }

    #[test]
    fn bad_escapes_are_rejected_with_location() {
        let (offset, message) = utf8_syntax_error(r#"x="ab\qc""#);
        assert_eq!(offset, 5);
        assert!(message.contains(r"invalid escape sequence \q"), "{message}");
        assert!(message.contains("write it twice"), "{message}");

        for bad in [
            r#"x="\x4""#,
            r#"x="\xzz""#,
            r#"x="\400""#,
            r#"x="\12""#,
            r#"x="\ud800""#,
            r#"x="\u12""#,
            r#"x="\U00110000""#,
            r#"x="\'""#,
        ] {
            assert!(parse_utf8(bad).is_err(), "{bad:?} should be rejected");
        }
        let (_, message) = utf8_syntax_error(r#"x="\xff""#);
        assert!(message.contains("not valid UTF-8"), "{message}");
    }

    #[test]
    fn bad_escape_reported_when_classic_also_fails() {
        // Classic reads `\d(` literally and then fails on the regex, so the
        // UTF-8 parser's escape error is what the user sees.
        let (offset, message, text) = syntax_error(r#"code=~"\d(""#);
        assert_eq!(offset, 7);
        assert!(message.contains(r"invalid escape sequence \d"), "{message}");
        assert!(
            text.starts_with(r#"invalid matcher "code=~\"\\d(\"": "#),
            "{text}"
        );
    }

    // --- classic fallback ------------------------------------------------

    #[test]
    fn classic_fallback_accepts_empty_and_spaced_values() {
        assert!(parse_utf8("severity=").is_err());
        assert_eq!(one("severity="), m("severity", MatchOp::Equal, ""));
        assert!(parse_utf8("env=prod stage").is_err());
        assert_eq!(
            one("env=prod stage"),
            m("env", MatchOp::Equal, "prod stage")
        );
        assert_eq!(
            parse_matchers("{foo=bar baz, qux!= }").unwrap(),
            vec![
                m("foo", MatchOp::Equal, "bar baz"),
                m("qux", MatchOp::NotEqual, ""),
            ]
        );
    }

    #[test]
    fn classic_fallback_escapes() {
        // A single backslash is literal in the classic syntax.
        let digits = one(r#"code=~"\d+""#);
        assert_eq!(digits.value(), r"\d+");
        assert!(digits.matches(&labels(&[("code", "42")])));
        // Only \" \\ and \n are escapes there (`\q` makes the UTF-8 parser fail).
        assert_eq!(one(r#"msg="a\"b\\c\nd\qe""#).value(), "a\"b\\c\nd\\qe");
        // A quote in the middle of a classic value is invalid.
        assert!(parse_matchers(r#"a="x, y" z,b=2,"#).is_err());
        // Commas inside quotes do not split; a trailing comma is dropped.
        assert_eq!(
            parse_matchers(r#"a= "x, \q" ,b=c d,"#).unwrap(),
            vec![
                m("a", MatchOp::Equal, r"x, \q"),
                m("b", MatchOp::Equal, "c d")
            ]
        );
    }

    #[test]
    fn classic_fallback_with_unbalanced_braces_is_accepted_like_alertmanager() {
        // Alertmanager's fallback mode accepts these via the classic parser,
        // even though the UTF-8 grammar rejects them.
        assert!(parse_utf8("{a=b").is_err());
        assert_eq!(
            parse_matchers("{a=b").unwrap(),
            vec![m("a", MatchOp::Equal, "b")]
        );
        assert_eq!(
            parse_matchers("a=b}").unwrap(),
            vec![m("a", MatchOp::Equal, "b")]
        );
    }

    // --- errors --------------------------------------------------------------

    #[test]
    fn unbalanced_braces() {
        let (offset, message) = utf8_syntax_error("{a=b");
        assert_eq!(offset, 4);
        assert!(message.contains("expected close brace"), "{message}");
        assert!(message.contains("unexpected end of input after \"{a=b\""));

        let (offset, message) = utf8_syntax_error("a=b}");
        assert_eq!(offset, 3);
        assert!(message.contains("expected opening brace"), "{message}");

        let (offset, message) = utf8_syntax_error("{a=b} c=d");
        assert_eq!(offset, 6);
        assert!(message.contains("after the closing brace"), "{message}");

        // Quoted names make the classic parser fail too, so the public
        // function reports the brace problem.
        let (_, message, text) = syntax_error(r#"{"a"=b"#);
        assert!(message.contains("expected close brace"), "{message}");
        assert!(
            text.starts_with(r#"invalid matcher "{\"a\"=b": "#),
            "{text}"
        );
        let (_, message, _) = syntax_error(r#""a"=b}"#);
        assert!(message.contains("expected opening brace"), "{message}");
    }

    #[test]
    fn missing_value() {
        let (offset, message) = utf8_syntax_error("foo=");
        assert_eq!(offset, 4);
        assert_eq!(
            message,
            r#"unexpected end of input after "foo=": expected a label value (write foo="" for an empty value)"#
        );

        let (_, message, text) = syntax_error(r#""foo"=~"#);
        assert!(message.contains("expected a label value"), "{message}");
        assert!(
            message.contains(r#"write "foo"=~"" for an empty value"#),
            "{message}"
        );
        assert!(text.ends_with("(at character offset 7)"), "{text}");

        let (offset, message, _) = syntax_error(r#""foo"=,b=c"#);
        assert_eq!(offset, 6);
        assert!(
            message.contains(r#"unexpected ",": expected a label value"#),
            "{message}"
        );
    }

    #[test]
    fn unterminated_quote() {
        let (offset, message, text) = syntax_error(r#"foo="bar"#);
        assert_eq!(offset, 4);
        assert!(message.contains("unterminated quoted string"), "{message}");
        assert!(message.contains(r#""\"bar""#), "{message}");
        assert!(
            text.starts_with(r#"invalid matcher "foo=\"bar": "#),
            "{text}"
        );

        let (offset, message, _) = syntax_error(r#"a="b",c="d\""#);
        assert_eq!(offset, 8);
        assert!(message.contains("unterminated quoted string"), "{message}");
    }

    #[test]
    fn missing_operator() {
        let (offset, message, _) = syntax_error("foo");
        assert_eq!(offset, 3);
        assert!(
            message.contains("unexpected end of input after \"foo\""),
            "{message}"
        );
        assert!(
            message.contains("expected an operator (=, !=, =~ or !~)"),
            "{message}"
        );

        let (offset, message, _) = syntax_error(r#"foo "bar""#);
        assert_eq!(offset, 4);
        assert!(
            message.contains(r#"unexpected "\"bar\"": expected an operator"#),
            "{message}"
        );

        let (offset, message, _) = syntax_error("foo!bar");
        assert_eq!(offset, 3);
        assert!(message.contains(r#"expected "!=" or "!~""#), "{message}");

        let (offset, message, _) = syntax_error("foo~bar");
        assert_eq!(offset, 3);
        assert!(message.contains(r#"expected "=~" or "!~""#), "{message}");
    }

    #[test]
    fn misplaced_tokens() {
        let (offset, message, _) = syntax_error(r#"=foo"#);
        assert_eq!(offset, 0);
        assert!(
            message.contains(r#"unexpected "=": expected a label name"#),
            "{message}"
        );

        let (offset, message) = utf8_syntax_error("a=b,,c=d");
        assert_eq!(offset, 4);
        assert!(message.contains("expected a label name"), "{message}");
        assert!(parse_matchers("a=b,,c=d").is_err());

        let (offset, message) = utf8_syntax_error("a=b c=d");
        assert_eq!(offset, 4);
        assert!(
            message.contains(r#"unexpected "c": expected "," between matchers or end of input"#),
            "{message}"
        );

        let (offset, message) = utf8_syntax_error("foo='bar'");
        assert_eq!(offset, 4);
        assert!(message.contains("double quotes"), "{message}");

        let (offset, message) = utf8_syntax_error(r"foo=~\d+");
        assert_eq!(offset, 5);
        assert!(message.contains("backslash"), "{message}");

        let (offset, message, _) = syntax_error(r#"""="x""#);
        assert_eq!(offset, 0);
        assert!(
            message.contains("label name must not be empty"),
            "{message}"
        );
    }

    #[test]
    fn offsets_count_characters_not_bytes() {
        let (offset, _) = utf8_syntax_error(r#""é😀"="x" y"#);
        assert_eq!(offset, 9);
    }

    #[test]
    fn bad_regex_is_reported_with_the_matcher() {
        let err = parse_matchers(r#"severity=~"(""#).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(r#"invalid matcher "severity=~\"(\"": bad regex: "#),
            "{text}"
        );
        assert!(text.contains("unclosed group"), "{text}");
        assert!(!text.contains('\n'), "message should be one line: {text}");

        let err = parse_matchers(r#"a="ok", b!~"[z-a]""#).unwrap_err();
        assert!(
            matches!(&err, MatcherError::BadRegex { matcher, .. } if matcher == r#"b!~"[z-a]""#),
            "{err:?}"
        );

        let err = Matcher::new("job", MatchOp::RegexMatch, "a)").unwrap_err();
        assert!(
            err.to_string()
                .starts_with(r#"invalid matcher "job=~\"a)\"": bad regex: "#),
            "{err}"
        );
        // Plain equality does not treat the value as a regex.
        assert!(Matcher::new("job", MatchOp::Equal, "(").is_ok());
    }

    #[test]
    fn empty_label_name_is_rejected_by_new() {
        assert_eq!(
            Matcher::new("", MatchOp::Equal, "x").unwrap_err(),
            MatcherError::EmptyLabelName
        );
    }

    // --- display -----------------------------------------------------------

    #[test]
    fn display_is_canonical() {
        assert_eq!(m("foo", MatchOp::Equal, "bar").to_string(), r#"foo="bar""#);
        assert_eq!(m("foo", MatchOp::NotEqual, "").to_string(), r#"foo!="""#);
        assert_eq!(
            m("a:b_1", MatchOp::RegexMatch, r"\d+").to_string(),
            r#"a:b_1=~"\\d+""#
        );
        assert_eq!(
            m("service.name", MatchOp::RegexNoMatch, "x").to_string(),
            r#""service.name"!~"x""#
        );
        assert_eq!(
            m("1abc", MatchOp::Equal, "q\"\n\t\u{1}").to_string(),
            r#""1abc"="q\"\n\t\u0001""#
        );
        assert_eq!(MatchOp::RegexNoMatch.to_string(), "!~");
    }

    #[test]
    fn display_round_trips_tricky_names_and_values() {
        let names = [
            "foo",
            "_x:y",
            "1abc",
            "service.name",
            "with space",
            "quote\"d",
            "back\\slash",
            "😀",
            "new\nline",
            "{}",
            "=~",
        ];
        let values = [
            "",
            "plain",
            "with \"quotes\"",
            r"back\slash\\",
            "new\nline\r\n",
            "tab\there",
            "emoji 😀 é ☃",
            "\u{0}\u{7}\u{1b}\u{7f}\u{85}",
            "\u{200b}\u{feff}\u{2028}",
            "commas, braces {} ops =~ !~ !=",
            "'single' `back`",
            "\\x41 \\u00e9",
        ];
        for name in names {
            for value in values {
                for op in [MatchOp::Equal, MatchOp::NotEqual] {
                    let original = m(name, op, value);
                    let shown = original.to_string();
                    assert_eq!(
                        parse_matchers(&shown).unwrap(),
                        vec![original.clone()],
                        "round trip of {shown}"
                    );
                }
            }
            let original = m(name, MatchOp::RegexMatch, r#"a\.b|"c"\n"#);
            assert_eq!(
                parse_matchers(&original.to_string()).unwrap(),
                vec![original]
            );
        }
    }

    #[test]
    fn arbitrary_input_never_panics_and_results_round_trip() {
        const ALPHABET: &[char] = &[
            'a', 'b', '_', '0', '7', '.', '=', '!', '~', '{', '}', ',', '"', '\\', '\'', '`', ' ',
            '\n', 'x', 'u', 'U', 'n', '(', ')', '*', '|', 'é', '😀', '\u{0}',
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for _ in 0..30_000 {
            let len = (next() % 14) as usize;
            let input: String = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let Ok(parsed) = parse_matchers(&input) else {
                continue;
            };
            accepted += 1;
            let canonical = parsed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",");
            assert_eq!(
                parse_matchers(&canonical).unwrap(),
                parsed,
                "input {input:?} canonical {canonical:?}"
            );
        }
        assert!(accepted > 100, "generator too weak: {accepted}");
    }
}
