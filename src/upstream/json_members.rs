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

/// Like [`find`], walking back from the object's closing brace: only the members after the
/// last one named `key` are read. Answers put `usage` last or near it, so this reads a few
/// dozen bytes whatever the answer's length, where [`find`] walks every member before it.
///
/// `Some(Some(value))`: the last member named `key`; `Some(None)`: no member has that name
/// (every member was walked); `None`: the walk met something it cannot read (a key written
/// with escapes, a byte out of place), and the caller walks forward instead. Going backwards,
/// a quote ends a string's content when an even number of backslashes precedes it. Like
/// [`find`] it does not validate: of a document that is not valid JSON it may read a `usage`
/// from the tail. Bounded: each byte is looked at a bounded number of times; no recursion.
pub fn find_last<'a>(b: &'a [u8], key: &[u8]) -> Option<Option<&'a [u8]>> {
    let open = skip_ws(b, 0);
    if b.get(open) != Some(&b'{') {
        return None;
    }
    let close = rskip_ws_from(b, 0, b.len()).checked_sub(1)?;
    if close <= open || b[close] != b'}' {
        return None;
    }
    // Everything read lies strictly between the braces.
    let lo = open + 1;
    let mut end = rskip_ws_from(b, lo, close);
    if end == lo {
        return Some(None);
    }
    loop {
        let value_start = rskip_value(b, lo, end)?;
        let colon = rskip_ws_from(b, lo, value_start).checked_sub(1)?;
        if colon < lo || b[colon] != b':' {
            return None;
        }
        let key_close = rskip_ws_from(b, lo, colon).checked_sub(1)?;
        if key_close < lo || b[key_close] != b'"' {
            return None;
        }
        let key_open = rstring_start(b, lo, key_close)?;
        let name = &b[key_open + 1..key_close];
        if name.contains(&b'\\') {
            return None;
        }
        if name == key {
            return Some(Some(&b[value_start..end]));
        }
        let before = rskip_ws_from(b, lo, key_open);
        if before == lo {
            return Some(None);
        }
        if b[before - 1] != b',' {
            return None;
        }
        end = rskip_ws_from(b, lo, before - 1);
    }
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
        let Some((after_key, escaped)) = string_end(b, self.i) else {
            return self.fail();
        };
        let key = (key_start, after_key - 1);
        self.escaped_key |= escaped;
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

pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Index just past the string that starts at `i` (on its opening quote).
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    string_end(b, i).map(|(end, _)| end)
}

/// Like [`skip_string`], also saying whether the string holds an escape (the search finds
/// the backslashes anyway, so a key needs no second pass to know it).
pub(crate) fn string_end(b: &[u8], i: usize) -> Option<(usize, bool)> {
    let mut i = i + 1;
    let mut escaped = false;
    loop {
        i += memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
        if b[i] == b'\\' {
            escaped = true;
            i += 2;
        } else {
            return Some((i + 1, escaped));
        }
    }
}

/// Index just past the last non-whitespace byte of `b[lo..end]`, or `lo`.
fn rskip_ws_from(b: &[u8], lo: usize, mut end: usize) -> usize {
    while end > lo && b[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    end
}

/// The opening quote of the string whose closing quote is at `close`, not before `lo`: the
/// nearest quote before it that an even number of backslashes precedes.
fn rstring_start(b: &[u8], lo: usize, close: usize) -> Option<usize> {
    let mut hi = close;
    loop {
        let q = lo + memchr::memrchr(b'"', b.get(lo..hi)?)?;
        let backslashes = b[lo..q].iter().rev().take_while(|&&c| c == b'\\').count();
        if backslashes % 2 == 0 {
            return Some(q);
        }
        hi = q;
    }
}

/// Where the value that ends just before `end` starts, not before `lo`; `None` if it does
/// not start there.
fn rskip_value(b: &[u8], lo: usize, end: usize) -> Option<usize> {
    if end <= lo {
        return None;
    }
    match b[end - 1] {
        b'"' => rstring_start(b, lo, end - 1),
        b'}' | b']' => {
            let mut depth = 0usize;
            let mut i = end - 1;
            loop {
                match b[i] {
                    b'"' => i = rstring_start(b, lo, i)?,
                    b'}' | b']' => depth += 1,
                    b'{' | b'[' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i);
                        }
                    }
                    _ => {}
                }
                if i == lo {
                    return None;
                }
                i -= 1;
            }
        }
        b',' | b'{' | b'[' | b':' => None,
        _ => {
            let mut i = end;
            while i > lo && !matches!(b[i - 1], b',' | b'{' | b'[' | b':') && !b[i - 1].is_ascii_whitespace()
            {
                i -= 1;
            }
            Some(i)
        }
    }
}

/// Index just past the value that starts at `i`; `None` if it does not end.
pub(crate) fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
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
    fn strings_with_an_escape_anywhere_end_where_they_end() {
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

    /// A small deterministic generator of JSON documents with what makes walking hard:
    /// escapes, runs of backslashes, nested containers, duplicate and escaped keys.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self, n: u64) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }

        fn ws(&mut self, out: &mut String) {
            out.push_str(["", " ", "\n  ", "\t"][self.next(4) as usize]);
        }

        fn string(&mut self, out: &mut String) {
            out.push('"');
            for _ in 0..self.next(12) {
                out.push_str(
                    [
                        "x", "\\\"", "\\\\", "\\\\\\\"", "\\n", "\\u0041", "}", "]", "{", ",", ":", "usage",
                    ][self.next(12) as usize],
                );
            }
            out.push('"');
        }

        fn key(&mut self, out: &mut String) {
            let k = [
                "usage",
                "usage",
                "id",
                "choices",
                "us\\u0061ge",
                "a\\\"b",
                "x\\\\",
            ][self.next(7) as usize];
            out.push('"');
            out.push_str(k);
            out.push('"');
        }

        fn value(&mut self, out: &mut String, depth: u32) {
            let pick = if depth >= 4 { self.next(5) } else { self.next(7) };
            match pick {
                0 => out.push_str("null"),
                1 => out.push_str(["true", "false"][self.next(2) as usize]),
                2 => out.push_str(["0", "-1.5e3", "42", "7"][self.next(4) as usize]),
                3 | 4 => self.string(out),
                5 => {
                    out.push('[');
                    for i in 0..self.next(4) {
                        if i > 0 {
                            out.push(',');
                        }
                        self.ws(out);
                        self.value(out, depth + 1);
                        self.ws(out);
                    }
                    out.push(']');
                }
                _ => self.object(out, depth + 1),
            }
        }

        fn object(&mut self, out: &mut String, depth: u32) {
            out.push('{');
            for i in 0..self.next(5) {
                if i > 0 {
                    out.push(',');
                }
                self.ws(out);
                self.key(out);
                self.ws(out);
                out.push(':');
                self.ws(out);
                self.value(out, depth);
                self.ws(out);
            }
            out.push('}');
        }
    }

    #[test]
    fn walking_back_finds_what_walking_forward_and_serde_find() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        let mut found = 0;
        for _ in 0..20_000 {
            let mut doc = String::new();
            g.ws(&mut doc);
            g.object(&mut doc, 0);
            g.ws(&mut doc);
            let b = doc.as_bytes();
            let parsed: serde_json::Value = serde_json::from_str(&doc).expect("generated JSON is valid");
            let (forward, escaped) = find(b, b"usage").expect("the forward walk reads valid JSON");
            match find_last(b, b"usage") {
                Some(back) => {
                    // Walking back gives up on escaped keys; what it does answer is exact.
                    if !escaped {
                        assert_eq!(back, forward, "{doc}");
                    }
                    let want = parsed.get("usage");
                    let got = back.map(|v| serde_json::from_slice::<serde_json::Value>(v).unwrap());
                    assert_eq!(got.as_ref(), want, "{doc}");
                    found += usize::from(back.is_some());
                }
                None => {
                    let escaped_keys = members(b)
                        .unwrap()
                        .iter()
                        .any(|m| b[m.key.0..m.key.1].contains(&b'\\'));
                    assert!(escaped_keys, "gave up on a document without escaped keys: {doc}");
                }
            }
        }
        assert!(found > 1_000, "the generator rarely put usage last: {found}");
    }

    #[test]
    fn walking_back_over_broken_documents_gives_up_without_panicking() {
        let mut g = Gen(7);
        for _ in 0..3_000 {
            let mut doc = String::new();
            g.object(&mut doc, 0);
            let b = doc.as_bytes();
            // Every cut, and a few bytes replaced by structural ones.
            for cut in 0..b.len() {
                let _ = find_last(&b[..cut], b"usage");
                let _ = find_last(&b[cut..], b"usage");
            }
            let mut bad = b.to_vec();
            for _ in 0..3 {
                let at = g.next(bad.len() as u64) as usize;
                bad[at] = b"\"\\{}[],:"[g.next(8) as usize];
                let _ = find_last(&bad, b"usage");
            }
        }
        assert_eq!(find_last(b" { } ", b"usage"), Some(None));
        assert_eq!(
            find_last(br#"{"usage":{"total_tokens":1}}"#, b"usage"),
            Some(Some(&br#"{"total_tokens":1}"#[..]))
        );
        assert_eq!(find_last(br#"{"a":"\\\"usage\":1}"}"#, b"usage"), Some(None));
        // A long run of backslashes before a quote is counted once, not once per quote.
        let mut long = br#"{"usage":1,"s":""#.to_vec();
        long.extend(std::iter::repeat_n(b'\\', 200_000));
        long.extend_from_slice(br#""}"#);
        let _ = find_last(&long, b"usage");
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
            b"}",
            b"{}",
            b" { } ",
            b"\"}",
            b"{\"usage\"}",
            b"{:1}",
            b"{,}",
        ] {
            let _ = members(doc);
            let _ = find(doc, b"a");
            let _ = find_last(doc, b"usage");
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
