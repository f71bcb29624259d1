//! Reading the service's HTML pages as a person or a browser would: a section by its id, the
//! text without tags, the URLs a page makes a browser load or follow, the form's CSRF token.

/// The `<section id="{id}">` of `html`, up to its end tag. Label values are escaped, so the
/// first `</section>` after it is its own.
pub fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<section id=\"{id}\""))
        .unwrap_or_else(|| panic!("no section {id:?} in:\n{html}"));
    let end = html[start..]
        .find("</section>")
        .unwrap_or_else(|| panic!("section {id:?} has no end in:\n{html}"));
    &html[start..start + end + "</section>".len()]
}

/// What a person reads: the text between the tags (a block's end is a space, an inline
/// element's is not), each run of white space one space, the character references decoded.
pub fn text(html: &str) -> String {
    const INLINE: [&str; 11] = [
        "strong", "em", "span", "time", "a", "code", "abbr", "small", "b", "i", "kbd",
    ];
    let mut out = String::new();
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        out.push_str(&rest[..at]);
        let end = rest[at..].find('>').map_or(rest.len(), |end| at + end + 1);
        let name: String = rest[at + 1..end]
            .trim_start_matches('/')
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        if !INLINE.contains(&name.as_str()) {
            out.push(' ');
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    let words: Vec<&str> = out.split_whitespace().collect();
    decode_references(&words.join(" "))
}

/// `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&#39;` and any numeric reference (`&#60;`) as the
/// characters they stand for.
fn decode_references(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';').filter(|end| *end <= 8) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let name = &rest[1..end];
        let decoded = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => name
                .strip_prefix("#x")
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| name.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every value of an attribute that makes a browser load or follow a URL (`href`, `src`,
/// `action`, `formaction`, `srcset`, `poster`, `data`, `background`), in the tags of `html`, in
/// order. Text between tags is not looked at: escaped, it holds no tag.
pub fn url_attributes(html: &str) -> Vec<String> {
    const NAMES: [&str; 8] = [
        "href",
        "src",
        "action",
        "formaction",
        "srcset",
        "poster",
        "data",
        "background",
    ];
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        let end = rest[at..].find('>').map_or(rest.len(), |end| at + end);
        let mut tag = &rest[at + 1..end];
        rest = &rest[end..];
        // The tag's name, then `name`, `name=value`, `name="value"` or `name='value'`.
        tag = tag.trim_start_matches(|c: char| !c.is_whitespace());
        while !tag.trim_start().is_empty() {
            tag = tag.trim_start();
            let name_end = tag
                .find(|c: char| c == '=' || c.is_whitespace())
                .unwrap_or(tag.len());
            let name = tag[..name_end].to_ascii_lowercase();
            tag = tag[name_end..].trim_start();
            let Some(value) = tag.strip_prefix('=') else {
                continue;
            };
            let value = value.trim_start();
            let (value, after) = match value.chars().next() {
                Some(quote @ ('"' | '\'')) => {
                    let inner = &value[1..];
                    let close = inner.find(quote).unwrap_or(inner.len());
                    (&inner[..close], &inner[(close + 1).min(inner.len())..])
                }
                _ => {
                    let close = value.find(char::is_whitespace).unwrap_or(value.len());
                    (&value[..close], &value[close..])
                }
            };
            if NAMES.contains(&name.as_str()) {
                found.push(value.to_string());
            }
            tag = after;
        }
    }
    found
}

/// The CSRF token in the acknowledgement form of `page`.
pub fn csrf_token_in(page: &str) -> String {
    let field = "name=\"csrf\" value=\"";
    let start = page
        .find(field)
        .unwrap_or_else(|| panic!("no CSRF field in:\n{page}"))
        + field.len();
    page[start..].split('"').next().unwrap().to_string()
}
