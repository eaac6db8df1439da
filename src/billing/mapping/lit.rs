//! A tiny reader for JSON and Python literal syntax (`'single quotes'`, `None`, `True`),
//! keeping numbers as text so they stay exact.
#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    List(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

impl Lit {
    pub fn get(&self, key: &str) -> Option<&Lit> {
        match self {
            Lit::Dict(pairs) => pairs
                .iter()
                .find(|(k, _)| matches!(k, Lit::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn as_text(&self) -> Option<String> {
        match self {
            Lit::Null => None,
            Lit::Bool(b) => Some(b.to_string()),
            Lit::Num(n) => Some(n.clone()),
            Lit::Str(s) => Some(s.clone()),
            Lit::List(_) | Lit::Dict(_) => None,
        }
    }
}

/// The deepest nesting of lists and dicts [`parse`] reads.
pub const MAX_DEPTH: u32 = 64;

/// Where `s` first nests lists, dicts or tuples deeper than [`MAX_DEPTH`] (outside quoted
/// strings): the 1-based character, or `None`. Tells a hostile value from a merely odd one.
pub fn too_deep_at(s: &str) -> Option<usize> {
    let mut depth = 0u32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.chars().enumerate() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => quote = Some(c),
                '{' | '[' | '(' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Some(i + 1);
                    }
                }
                '}' | ']' | ')' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    None
}

pub fn parse(s: &str) -> Option<Lit> {
    let mut p = P {
        b: s.as_bytes(),
        s,
        i: 0,
        depth: 0,
    };
    let v = p.value()?;
    p.ws();
    (p.i == p.b.len()).then_some(v)
}

struct P<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
    depth: u32,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn value(&mut self) -> Option<Lit> {
        self.ws();
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let c = *self.b.get(self.i)?;
        let v = match c {
            b'{' => self.seq(b'}', true),
            b'[' => self.seq(b']', false),
            b'(' => self.seq(b')', false),
            b'\'' | b'"' => self.string().map(Lit::Str),
            b'-' | b'+' | b'.' | b'0'..=b'9' => {
                let start = self.i;
                while self.i < self.b.len()
                    && matches!(
                        self.b[self.i],
                        b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
                    )
                {
                    self.i += 1;
                }
                Some(Lit::Num(self.s[start..self.i].to_string()))
            }
            _ => {
                let start = self.i;
                while self.i < self.b.len() && self.b[self.i].is_ascii_alphabetic() {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    "None" | "null" => Some(Lit::Null),
                    "True" | "true" => Some(Lit::Bool(true)),
                    "False" | "false" => Some(Lit::Bool(false)),
                    _ => None,
                }
            }
        };
        self.depth -= 1;
        v
    }
    fn seq(&mut self, close: u8, dict: bool) -> Option<Lit> {
        self.i += 1;
        let mut items = Vec::new();
        let mut pairs = Vec::new();
        loop {
            self.ws();
            if *self.b.get(self.i)? == close {
                self.i += 1;
                break;
            }
            let v = self.value()?;
            if dict {
                self.ws();
                if *self.b.get(self.i)? != b':' {
                    return None;
                }
                self.i += 1;
                let val = self.value()?;
                pairs.push((v, val));
            } else {
                items.push(v);
            }
            self.ws();
            match *self.b.get(self.i)? {
                b',' => self.i += 1,
                c if c == close => {
                    self.i += 1;
                    break;
                }
                _ => return None,
            }
        }
        Some(if dict {
            Lit::Dict(pairs)
        } else {
            Lit::List(items)
        })
    }
    fn string(&mut self) -> Option<String> {
        let q = self.b[self.i];
        self.i += 1;
        let mut out = String::new();
        loop {
            let start = self.i;
            while self.i < self.b.len() && self.b[self.i] != q && self.b[self.i] != b'\\' {
                self.i += 1;
            }
            out.push_str(self.s.get(start..self.i)?);
            let c = *self.b.get(self.i)?;
            self.i += 1;
            if c == q {
                return Some(out);
            }
            // Backslash escape.
            let e = *self.b.get(self.i)?;
            self.i += 1;
            match e {
                b'n' => out.push('\n'),
                b't' => out.push('\t'),
                b'r' => out.push('\r'),
                b'0' => out.push('\0'),
                b'x' => {
                    let h = self.s.get(self.i..self.i + 2)?;
                    out.push(char::from_u32(u32::from_str_radix(h, 16).ok()?)?);
                    self.i += 2;
                }
                b'u' => {
                    let h = self.s.get(self.i..self.i + 4)?;
                    let mut cp = u32::from_str_radix(h, 16).ok()?;
                    self.i += 4;
                    if (0xD800..0xDC00).contains(&cp)
                        && self.s.get(self.i..self.i + 2) == Some("\\u")
                    {
                        let lo =
                            u32::from_str_radix(self.s.get(self.i + 2..self.i + 6)?, 16).ok()?;
                        if (0xDC00..0xE000).contains(&lo) {
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                            self.i += 6;
                        }
                    }
                    out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                }
                other => {
                    // `\\`, `\'`, `\"`, `\/` and anything else: the character itself.
                    let ch = self.s.get(self.i - 1..)?.chars().next()?;
                    if other.is_ascii() {
                        out.push(other as char);
                    } else {
                        out.push(ch);
                        self.i += ch.len_utf8() - 1;
                    }
                }
            }
        }
    }
}
