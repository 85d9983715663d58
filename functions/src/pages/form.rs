//! `application/x-www-form-urlencoded` bodies, as browsers send forms.

/// Decodes one component: `+` is a space, `%XX` a byte; the result must
/// be UTF-8 (else `None`).
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(v);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The fields of a form body, in order; `None` if any is not decodable.
pub fn parse(body: &str) -> Option<Vec<(String, String)>> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

/// The first value of `name`.
pub fn get<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Every value of `name` (checkboxes).
pub fn all<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_like_browsers_encode() {
        let f = parse("email=ann%40example.com&seats=A1&seats=A2&note=a+b").unwrap();
        assert_eq!(get(&f, "email"), Some("ann@example.com"));
        assert_eq!(all(&f, "seats"), ["A1", "A2"]);
        assert_eq!(get(&f, "note"), Some("a b"));
        assert!(parse("x=%zz").is_none());
        assert!(parse("x=%ff").is_none(), "not UTF-8");
        assert_eq!(parse("").unwrap(), Vec::new());
    }
}
