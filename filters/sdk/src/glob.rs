//! Glob matching for keys, with the rules rclone users know:
//! `*` matches within one path segment, `**` across segments, `?` one
//! character other than `/`, `[abc]` and `[a-z]` one of a set, `\x` a literal.

/// Whether `text` matches `pattern` as a whole.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    match_from(&p, &t)
}

fn match_from(p: &[char], t: &[char]) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    // Backtracking points for the last `*` and the last `**`.
    let mut star: Option<(usize, usize)> = None;
    let mut globstar: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' if p.get(pi + 1) == Some(&'*') => {
                    let mut next = pi + 2;
                    // `**/` also matches zero segments.
                    if p.get(next) == Some(&'/') {
                        next += 1;
                    }
                    globstar = Some((next, ti));
                    star = None;
                    pi = next;
                    continue;
                }
                '*' => {
                    star = Some((pi + 1, ti));
                    pi += 1;
                    continue;
                }
                '?' if t[ti] != '/' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((hit, len)) = class(&p[pi..], t[ti])
                        && hit
                    {
                        pi += len;
                        ti += 1;
                        continue;
                    }
                }
                '\\' if p.get(pi + 1) == Some(&t[ti]) => {
                    pi += 2;
                    ti += 1;
                    continue;
                }
                c if c == t[ti] && c != '?' && c != '\\' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        // Mismatch: widen the innermost star, within its segment.
        if let Some((sp, st)) = star
            && t[st] != '/'
        {
            star = Some((sp, st + 1));
            pi = sp;
            ti = st + 1;
            continue;
        }
        if let Some((gp, gt)) = globstar {
            globstar = Some((gp, gt + 1));
            star = None;
            pi = gp;
            ti = gt + 1;
            continue;
        }
        return false;
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Matches a `[...]` class at the start of `p` against `c`: whether it hit,
/// and the class's length in the pattern. `None` if the class is unclosed.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let start = i;
    while i < p.len() {
        if p[i] == ']' && i > start {
            return Some((hit != negate && c != '/', i + 1));
        }
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            if (p[i]..=p[i + 2]).contains(&c) {
                hit = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                hit = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn table() {
        #[rustfmt::skip]
        let table = [
            ("*.tmp", "a.tmp", true),
            ("*.tmp", "dir/a.tmp", false),
            ("**.tmp", "dir/a.tmp", true),
            ("**/*.tmp", "a.tmp", true),
            ("**/*.tmp", "x/y/a.tmp", true),
            ("**/_temporary/**", "out/_temporary/0/part", true),
            ("**/_temporary/**", "_temporary/0/part", true),
            ("**/_temporary/**", "out/temporary/0/part", false),
            ("logs/*", "logs/a", true),
            ("logs/*", "logs/a/b", false),
            ("logs/**", "logs/a/b", true),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("[ab]x", "bx", true),
            ("[!ab]x", "cx", true),
            ("[!ab]x", "ax", false),
            ("[0-9][0-9]", "42", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("", "", true),
            ("*", "", true),
            ("a*b*c", "a-b-b-c", true),
            ("a*b*c", "a-b-b-d", false),
        ];
        for (p, t, want) in table {
            assert_eq!(matches(p, t), want, "{p:?} vs {t:?}");
        }
    }
}
