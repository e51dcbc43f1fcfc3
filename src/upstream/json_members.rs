//! The top-level members of a JSON object, found as byte spans without building anything.
//!
//! Two hot paths need one member of a document they otherwise pass on untouched: the chat
//! body's `model` (to splice in the upstream's name) and an answer's `usage` (for the usage
//! record). A full parse of the rest only to skip it cost more than everything else the
//! router does with such a body; this scanner jumps over strings with `memchr` instead.
//!
//! It reads untrusted bytes: it never panics, never reads past the end, and gives up
//! (`None`) on anything that is not an object it can walk. It does not validate: callers
//! that need a valid document validate it themselves, and parse the member's value with
//! serde. Keys are compared raw, so a key written with escapes (`"mod\u0065l"`) does not
//! match its plain spelling; [`Scan::escaped_key`] says when that may have happened.

/// Byte spans of one top-level member: the key without its quotes, and the raw value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub key: (usize, usize),
    pub value: (usize, usize),
}

/// Every top-level member of the object in `b`, or `None` if it is not one.
pub fn members(b: &[u8]) -> Option<Vec<Member>> {
    let mut scan = Scan::new(b)?;
    let mut out = Vec::new();
    for m in scan.by_ref() {
        out.push(m);
    }
    scan.complete().then_some(out)
}

/// The raw value of the last top-level member named `key` (the last, as JSON.parse keeps),
/// and whether the scan may have missed it because a key was written with escapes. `None`
/// when `b` is not an object the scanner can walk.
pub fn find<'a>(b: &'a [u8], key: &[u8]) -> Option<(Option<&'a [u8]>, bool)> {
    let mut scan = Scan::new(b)?;
    let mut found = None;
    for m in scan.by_ref() {
        if &b[m.key.0..m.key.1] == key {
            found = Some(&b[m.value.0..m.value.1]);
        }
    }
    scan.complete().then_some((found, scan.escaped_key))
}

/// A walk over the members of one object; yields until the closing brace or a malformed
/// byte (then `complete` is false).
pub struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    done: bool,
    ok: bool,
    /// Some key held a backslash (an escape): it was compared as written.
    pub escaped_key: bool,
}

impl<'a> Scan<'a> {
    /// Starts after the opening brace; `None` if `b` does not start with one.
    pub fn new(b: &'a [u8]) -> Option<Self> {
        let i = skip_ws(b, 0);
        (b.get(i) == Some(&b'{')).then_some(Scan {
            b,
            i: i + 1,
            done: false,
            ok: false,
            escaped_key: false,
        })
    }

    /// Whether the walk reached the object's closing brace.
    pub fn complete(&self) -> bool {
        self.done && self.ok
    }

    fn fail(&mut self) -> Option<Member> {
        self.done = true;
        None
    }
}

impl Iterator for Scan<'_> {
    type Item = Member;

    fn next(&mut self) -> Option<Member> {
        if self.done {
            return None;
        }
        let b = self.b;
        loop {
            self.i = skip_ws(b, self.i);
            match b.get(self.i) {
                Some(b'}') => {
                    self.done = true;
                    self.ok = true;
                    return None;
                }
                Some(b',') => self.i += 1,
                Some(b'"') => break,
                _ => return self.fail(),
            }
        }
        let key_start = self.i + 1;
        let Some(after_key) = skip_string(b, self.i) else {
            return self.fail();
        };
        let key = (key_start, after_key - 1);
        // Keys are short: a plain loop beats setting up a vector search.
        if b[key.0..key.1].contains(&b'\\') {
            self.escaped_key = true;
        }
        let colon = skip_ws(b, after_key);
        if b.get(colon) != Some(&b':') {
            return self.fail();
        }
        let value_start = skip_ws(b, colon + 1);
        let Some(value_end) = skip_value(b, value_start) else {
            return self.fail();
        };
        self.i = value_end;
        Some(Member {
            key,
            value: (value_start, value_end),
        })
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Index just past the string that starts at `i` (on its opening quote).
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut i = i + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
        if b[i] == b'\\' {
            i += 2;
        } else {
            return Some(i + 1);
        }
    }
}

/// Index just past the value that starts at `i`; `None` if it does not end.
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        b',' | b'}' | b']' | b':' => None,
        _ => {
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']') && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            Some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: &[u8]) -> Option<Vec<String>> {
        members(b).map(|ms| {
            ms.iter()
                .map(|m| String::from_utf8_lossy(&b[m.key.0..m.key.1]).into_owned())
                .collect()
        })
    }

    #[test]
    fn walks_the_top_level_only() {
        let doc = br#" { "a" : "x\"}{" , "b":{"usage":1,"c":[1,{"d":"]"}]}, "usage": {"total_tokens": 3} ,"n":-1.5e3,"t":true} "#;
        assert_eq!(keys(doc).unwrap(), ["a", "b", "usage", "n", "t"]);
        let (value, escaped) = find(doc, b"usage").unwrap();
        assert_eq!(value.unwrap(), br#"{"total_tokens": 3}"#);
        assert!(!escaped);
        assert_eq!(find(doc, b"missing").unwrap().0, None);
        assert_eq!(keys(b"{}").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn strings_end_right_on_either_side_of_the_short_search() {
        // An escaped quote or backslash at every position of strings of every length up to
        // beyond the vector searches' block sizes, and the same documents cut short.
        for len in 0..80 {
            for esc in 0..=len {
                for escape in [&br#"\""#[..], br"\\"] {
                    let mut s = vec![b'x'; len];
                    s.splice(esc..esc, escape.iter().copied());
                    let mut doc = br#"{"k":""#.to_vec();
                    doc.extend_from_slice(&s);
                    doc.extend_from_slice(br#"","usage":{"total_tokens":7}}"#);
                    let (value, _) = find(&doc, b"usage").unwrap();
                    assert_eq!(
                        value.unwrap(),
                        br#"{"total_tokens":7}"#,
                        "len {len} escape at {esc}"
                    );
                    let cut = &doc[..6 + s.len()];
                    assert_eq!(find(cut, b"usage"), None, "unterminated, len {len}");
                }
            }
        }
    }

    #[test]
    fn the_last_duplicate_wins_and_escaped_keys_are_flagged() {
        let (v, _) = find(br#"{"k":1,"k":2}"#, b"k").unwrap();
        assert_eq!(v.unwrap(), b"2");
        let (v, escaped) = find(br#"{"us\u0061ge":{}}"#, b"usage").unwrap();
        assert_eq!(v, None);
        assert!(escaped);
    }

    #[test]
    fn hostile_input_gives_up_without_panicking() {
        for doc in [
            &b""[..],
            b"[1]",
            b"{",
            b"{\"a\"",
            b"{\"a\":",
            b"{\"a\":\"\\",
            b"{\"a\":\"x\\\"",
            b"{\"a\":[1,2",
            b"{\"a\":}",
            b"{\"a\" 1}",
            b"{1:2}",
            b"{\"a\":1",
            b"{\"a\":{\"b\":\"}\"",
            b"\xff\xfe{",
            b"{\"\xff\":\"\xfe\"}",
        ] {
            let _ = members(doc);
            let _ = find(doc, b"a");
        }
        assert_eq!(members(b"{\"a\":[1,2"), None);
        assert_eq!(members(b"{\"a\":}"), None);
        // Deep nesting is walked in constant stack: no recursion.
        let mut deep = b"{\"a\":".to_vec();
        deep.extend(std::iter::repeat_n(b'[', 1_000_000));
        deep.extend(std::iter::repeat_n(b']', 1_000_000));
        deep.push(b'}');
        assert_eq!(keys(&deep).unwrap(), ["a"]);
    }
}
