//! Reading the TOML configuration file.

use super::{Config, ConfigError};

/// Reads and parses `path`. Unknown keys are refused, with the key named. An error names the
/// key and the line, never the line's text nor a value: the line may hold a key.
pub fn read(path: &str) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_string(),
        source,
    })?;
    parse(&text).map_err(|message| ConfigError::Parse {
        path: path.to_string(),
        message,
    })
}

/// Parses the file's text; the error is already redacted.
fn parse(text: &str) -> Result<Config, String> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let mut out = String::new();
        if let Some(line) = line {
            out.push_str(&format!("line {line}: "));
        }
        if key != "." {
            out.push_str(&format!("{key}: "));
        }
        out.push_str(&redact_values(inner.message()));
        out
    })
}

/// Replaces every quoted value in a parser message (`invalid type: string "sk-…"`, `integer
/// `5``) with `…`. Messages about unknown or missing fields quote only key names, kept.
fn redact_values(message: &str) -> String {
    if message.starts_with("unknown field") || message.starts_with("missing field") {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    for c in message.chars() {
        match open {
            None if c == '"' || c == '`' => {
                open = Some(c);
                out.push(c);
                out.push('…');
            }
            None => out.push(c),
            Some(q) if c == q => {
                open = None;
                out.push(c);
            }
            Some(_) => {}
        }
    }
    if let Some(q) = open {
        out.push(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_key_and_line_but_never_the_text() {
        let text = "listen = \"127.0.0.1:7070\"\n\n[[providers]]\nname = \"p\"\nbase_url = \"http://h/v1\"\n\
                    api_key = 12345678901\nmodels = [\"m\"]\n";
        let e = parse(text).unwrap_err();
        assert!(e.contains("line 6"), "{e}");
        assert!(e.contains("providers[0].api_key"), "{e}");
        assert!(!e.contains("12345678901"), "{e}");

        let text = "[[providers]]\nname = \"p\"\nbase_url = \"http://h/v1\"\napi_key = \"sk-secret-key-123\nmodels = []\n";
        let e = parse(text).unwrap_err();
        assert!(e.contains("line 4"), "{e}");
        assert!(!e.contains("sk-secret"), "{e}");

        let text = "[[providers]]\nname = \"p\"\nbase_url = \"http://h/v1\"\nmodels = [\"m\"]\nweight = \"sk-secret-as-weight\"\n";
        let e = parse(text).unwrap_err();
        assert!(e.contains("providers[0].weight"), "{e}");
        assert!(!e.contains("sk-secret"), "{e}");

        let e = parse("wat = 1\n").unwrap_err();
        assert!(e.contains("wat") && e.contains("line 1"), "{e}");
    }
}
