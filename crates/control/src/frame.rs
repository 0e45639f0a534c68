//! Where one JSON object or array ends in bytes that arrive in pieces (Process Pilot's clients send
//! a request and wait, without closing or ending a line), looking at each byte once: the request is
//! parsed once it is complete, so a client sending a byte at a time costs linear time, not quadratic.

/// What the bytes seen so far hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Not one whole value yet.
    More,
    /// One whole value, in the first `n` bytes.
    Complete(usize),
    /// The first character cannot start an object or an array.
    NotAContainer,
}

/// A scanner of one JSON object or array: brackets outside strings, strings and their escapes.
#[derive(Debug, Default)]
pub struct JsonFrame {
    scanned: usize,
    depth: usize,
    started: bool,
    in_string: bool,
    escaped: bool,
}

impl JsonFrame {
    /// Scans the bytes of `buf` not scanned yet (`buf` only grows between calls).
    pub fn scan(&mut self, buf: &[u8]) -> Progress {
        while self.scanned < buf.len() {
            let b = buf[self.scanned];
            self.scanned += 1;
            if !self.started {
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' => continue,
                    b'{' | b'[' => {
                        self.started = true;
                        self.depth = 1;
                        continue;
                    }
                    _ => return Progress::NotAContainer,
                }
            }
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Progress::Complete(self.scanned);
                    }
                }
                _ => {}
            }
        }
        Progress::More
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn byte_by_byte(text: &[u8]) -> (Progress, usize) {
        let mut frame = JsonFrame::default();
        for end in 1..=text.len() {
            match frame.scan(&text[..end]) {
                Progress::More => {}
                done => return (done, end),
            }
        }
        (Progress::More, text.len())
    }

    #[test]
    fn a_value_ends_at_its_closing_bracket_whatever_its_strings_hold() {
        let whole = br#"{"action": "restart", "processes": ["a}", "b\"]{", "c\\"]}"#;
        let mut request = whole.to_vec();
        request.extend_from_slice(b" trailing");
        assert_eq!(
            byte_by_byte(&request),
            (Progress::Complete(whole.len()), whole.len())
        );
        assert_eq!(
            JsonFrame::default().scan(b"  \n[1, [2], {}]"),
            Progress::Complete(15)
        );
    }

    #[test]
    fn incomplete_values_and_scalars_are_told_apart() {
        assert_eq!(byte_by_byte(b"{\"action\": ").0, Progress::More);
        assert_eq!(byte_by_byte(b"{\"a\": \"}").0, Progress::More);
        assert_eq!(
            JsonFrame::default().scan(b" \"restart\""),
            Progress::NotAContainer
        );
        assert_eq!(JsonFrame::default().scan(b""), Progress::More);
    }
}
