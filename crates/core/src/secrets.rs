//! Bearer tokens: where pilot-host looks for one, how much guessing one holds, and reading one from a
//! file. The manifest checks a token file with these; the control plane serves with them.

use std::path::Path;

/// The environment variable that may hold the bearer token; children do not inherit it.
pub const TOKEN_VAR: &str = "PILOT_HOST_TOKEN";

/// The fewest bits of guessing a token must hold when other machines may try it.
pub const MIN_TOKEN_BITS: f64 = 128.0;

/// Returns an estimate of how many bits of guessing `token` holds: its length times the bits of a
/// character from the kinds it uses (hex digits 4; lowercase, uppercase, digits and symbols adding
/// up to 6.6 for printable ASCII), or from its distinct characters when it repeats a few of them.
pub fn token_bits(token: &str) -> f64 {
    let chars: Vec<char> = token.chars().collect();
    let hex = |c: &char| c.is_ascii_digit() || ('a'..='f').contains(c);
    let hex_upper = |c: &char| c.is_ascii_digit() || ('A'..='F').contains(c);
    let alphabet: u32 = if chars.iter().all(hex) || chars.iter().all(hex_upper) {
        16
    } else {
        let has = |f: fn(&char) -> bool| chars.iter().any(f);
        [
            (has(char::is_ascii_lowercase), 26),
            (has(char::is_ascii_uppercase), 26),
            (has(char::is_ascii_digit), 10),
            (has(char::is_ascii_punctuation), 32),
            (has(|c: &char| !c.is_ascii()), 128),
        ]
        .iter()
        .filter(|(present, _)| *present)
        .map(|(_, n)| n)
        .sum()
    };
    let mut distinct = chars.clone();
    distinct.sort_unstable();
    distinct.dedup();
    // A token of few distinct characters (`aaaa`, `abab`) holds no more than they allow.
    let per_char = if distinct.len() < 8 {
        (distinct.len() as f64).log2()
    } else {
        f64::from(alphabet).log2()
    };
    chars.len() as f64 * per_char
}

/// Reads a token from `path` (surrounding whitespace removed).
pub fn read_token(path: &Path) -> Result<String, std::io::Error> {
    let text = std::fs::read_to_string(path)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is empty",
        ));
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_tokens_are_told_from_strong_ones() {
        for weak in [
            "a",
            "1234",
            "password",
            "correct-horse",
            &"a".repeat(60),
            &"ab".repeat(40),
        ] {
            assert!(
                token_bits(weak) < MIN_TOKEN_BITS,
                "{weak}: {}",
                token_bits(weak)
            );
        }
        for strong in [
            "3f1c9a0be2d47f5e8a61b0c3d9e27f41", // openssl rand -hex 16
            "q2Zl8v+Jx0bN4sY7tQ1wRg==",         // openssl rand -base64 16
            "Wd3kPz9rTq2mXv8LbN5cYh",           // 22 letters and digits
        ] {
            assert!(
                token_bits(strong) >= MIN_TOKEN_BITS,
                "{strong}: {}",
                token_bits(strong)
            );
        }
    }
}
