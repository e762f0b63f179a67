//! The offline model's "brain": a deterministic, rule-based responder. No language model ships with
//! its weights in the registries this project installs from, so the honest offline answer is a
//! small set of rules that are right when they answer: greetings, the time and date (UTC), spoken or
//! written arithmetic, a small facts table, and "You said: …" for everything else.
//!
//! Pure: time is an argument. Input is what speech-to-text produced ("What is 2 + 2?", "what is two
//! plus two"); numbers in replies are written as words so that text-to-speech says them naturally.

/// The reply to `text`, said at unix time `now_ms` (UTC).
pub fn respond(text: &str, now_ms: i64) -> String {
    let words = normalize(text);
    if words.is_empty() {
        return "I didn't catch that. Could you say it again?".into();
    }
    let joined = words.join(" ");
    if let Some(r) = arithmetic(&words) {
        return r;
    }
    if let Some(r) = time_or_date(&joined, now_ms) {
        return r;
    }
    if let Some(r) = fact(&joined) {
        return r;
    }
    if is_greeting(&words) {
        return "Hello! I'm Parlor's offline assistant. Ask me the time, the date, some arithmetic, \
                or a simple fact."
            .into();
    }
    format!(
        "You said: {}.",
        text.trim().trim_end_matches(['.', '?', '!'])
    )
}

/// Lower-case words; `+ - * / x ×` and digits split into their own tokens; punctuation dropped.
fn normalize(text: &str) -> Vec<String> {
    let mut spaced = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '+' | '*' | '×' | '÷' | '=' => {
                spaced.push(' ');
                spaced.push(c);
                spaced.push(' ');
            }
            // "-" as an operator only between spaces or before a digit ("5 - 3", "5-3").
            '-' => spaced.push_str(" - "),
            '/' => spaced.push_str(" / "),
            c if c.is_alphanumeric() || c == '.' || c == '\'' => spaced.extend(c.to_lowercase()),
            ',' => {} // "1,000"
            _ => spaced.push(' '),
        }
    }
    spaced
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '.' || c == '\'').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

fn is_greeting(words: &[String]) -> bool {
    const GREETINGS: &[&str] = &["hello", "hi", "hey", "greetings", "howdy", "hiya"];
    words
        .iter()
        .take(3)
        .any(|w| GREETINGS.contains(&w.as_str()))
        || words
            .windows(2)
            .take(3)
            .any(|p| p[0] == "good" && matches!(p[1].as_str(), "morning" | "afternoon" | "evening"))
}

// ---- arithmetic ----------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

impl Op {
    fn word(self) -> &'static str {
        match self {
            Op::Add => "plus",
            Op::Sub => "minus",
            Op::Mul => "times",
            Op::Div => "divided by",
        }
    }
}

/// "what is two plus two", "2 + 2", "what's 12 times 3", "seven divided by two", "5 minus 8".
fn arithmetic(words: &[String]) -> Option<String> {
    // Find the first operator with a number on each side.
    for i in 0..words.len() {
        let (op, skip) = match words[i].as_str() {
            "plus" | "+" | "add" => (Op::Add, 1),
            "minus" | "-" | "subtract" => (Op::Sub, 1),
            "times" | "x" | "*" | "×" => (Op::Mul, 1),
            "multiplied" if words.get(i + 1).is_some_and(|w| w == "by") => (Op::Mul, 2),
            "divided" if words.get(i + 1).is_some_and(|w| w == "by") => (Op::Div, 2),
            "over" | "/" | "÷" => (Op::Div, 1),
            _ => continue,
        };
        let Some((a, _)) = number_ending_at(words, i) else {
            continue;
        };
        let Some((b, _)) = number_starting_at(words, i + skip) else {
            continue;
        };
        let result = match op {
            Op::Add => a + b,
            Op::Sub => a - b,
            Op::Mul => a * b,
            Op::Div if b == 0.0 => {
                return Some(format!(
                    "{} divided by zero has no answer: you can't divide by zero.",
                    capitalize(&number_words(a))
                ))
            }
            Op::Div => a / b,
        };
        return Some(format!(
            "{} {} {} is {}.",
            capitalize(&number_words(a)),
            op.word(),
            number_words(b),
            number_words(result)
        ));
    }
    None
}

fn small_number(w: &str) -> Option<f64> {
    const ONES: &[&str] = &[
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: &[&str] = &[
        "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    if let Some(i) = ONES.iter().position(|o| *o == w) {
        return Some(i as f64);
    }

    if let Some(i) = TENS.iter().position(|t| *t == w) {
        return Some(20.0 + 10.0 * i as f64);
    }
    // "twenty-one" became "twenty - one" in normalize; "twentyone" is not a thing whisper writes.
    None
}

/// What speech-to-text writes for a spoken digit now and then ("what is too plus too"). Read only
/// as the one word right next to an arithmetic operator, so "time for lunch" stays words and
/// "the answer to five plus three" is not "to five".
fn homophone(w: &str) -> Option<f64> {
    match w {
        "won" => Some(1.0),
        "too" | "to" => Some(2.0),
        "tree" | "free" => Some(3.0),
        "for" | "fore" => Some(4.0),
        "ate" => Some(8.0),
        _ => None,
    }
}

fn is_number_word(w: &str) -> bool {
    small_number(w).is_some() || matches!(w, "hundred" | "thousand" | "million" | "a" | "and")
}

/// Parse number words or digits in `words[start..end]` ("two hundred and five", "3.5").
fn parse_number(words: &[String]) -> Option<f64> {
    if words.len() == 1 {
        if let Ok(v) = words[0].parse::<f64>() {
            return v.is_finite().then_some(v);
        }
    }
    let mut total = 0.0_f64;
    let mut current = 0.0_f64;
    let mut any = false;
    for w in words {
        match w.as_str() {
            "and" => {}
            "a" => current = 1.0,
            "hundred" => current = current.max(1.0) * 100.0,
            "thousand" | "million" => {
                let scale = if w == "thousand" { 1e3 } else { 1e6 };
                total += current.max(1.0) * scale;
                current = 0.0;
            }
            _ => {
                let v = small_number(w).or_else(|| w.parse::<f64>().ok())?;
                current += v;
            }
        }
        any = true;
    }
    any.then_some(total + current)
}

/// The longest number phrase ending just before index `op` (the operator).
fn number_ending_at(words: &[String], op: usize) -> Option<(f64, usize)> {
    let mut start = op;
    while start > 0
        && (is_number_word(&words[start - 1]) || words[start - 1].parse::<f64>().is_ok())
    {
        start -= 1;
    }
    // "twenty - one plus two": a hyphenated number before the operator.
    let phrase = &words[start..op];
    let phrase = trim_fillers(phrase);
    if phrase.is_empty() && op > 0 {
        return homophone(&words[op - 1]).map(|v| (v, op - 1));
    }
    parse_number(phrase).map(|v| (v, start))
}

/// The longest number phrase starting at index `from`.
fn number_starting_at(words: &[String], from: usize) -> Option<(f64, usize)> {
    let mut end = from;
    let mut negative = false;
    if words
        .get(end)
        .is_some_and(|w| w == "negative" || w == "minus")
    {
        negative = true;
        end += 1;
    }
    let begin = end;
    while end < words.len() && (is_number_word(&words[end]) || words[end].parse::<f64>().is_ok()) {
        end += 1;
    }
    let phrase = trim_fillers(&words[begin..end]);
    if phrase.is_empty() {
        let v = homophone(words.get(begin)?)?;
        return Some((if negative { -v } else { v }, begin + 1));
    }
    parse_number(phrase).map(|v| (if negative { -v } else { v }, end))
}

fn trim_fillers(mut phrase: &[String]) -> &[String] {
    while phrase.first().is_some_and(|w| w == "and" || w == "a") && phrase.len() > 1 {
        phrase = &phrase[1..];
    }
    while phrase.last().is_some_and(|w| w == "and") {
        phrase = &phrase[..phrase.len() - 1];
    }
    phrase
}

/// A number as English words: integers up to the millions ("one hundred and five"), negatives
/// ("minus three"), otherwise digits with at most two decimals ("three point five").
pub fn number_words(v: f64) -> String {
    if v < 0.0 {
        return format!("minus {}", number_words(-v));
    }
    let rounded = (v * 100.0).round() / 100.0;
    if rounded.fract() != 0.0 {
        let int = rounded.trunc();
        let frac = format!("{:.2}", rounded.fract());
        let digits: Vec<&str> = frac
            .trim_start_matches('0')
            .trim_start_matches('.')
            .trim_end_matches('0')
            .chars()
            .map(|c| DIGITS[c.to_digit(10).unwrap_or(0) as usize])
            .collect();
        return format!("{} point {}", number_words(int), digits.join(" "));
    }
    if rounded >= 1e9 {
        return format!("{rounded}");
    }
    int_words(rounded as u64)
}

const DIGITS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

fn int_words(n: u64) -> String {
    const TEENS: [&str; 10] = [
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 10] = [
        "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    match n {
        0..=9 => DIGITS[n as usize].to_string(),
        10..=19 => TEENS[(n - 10) as usize].to_string(),
        20..=99 => {
            let t = TENS[(n / 10) as usize];
            if n.is_multiple_of(10) {
                t.to_string()
            } else {
                format!("{t}-{}", DIGITS[(n % 10) as usize])
            }
        }
        100..=999 => {
            let rest = n % 100;
            let head = format!("{} hundred", DIGITS[(n / 100) as usize]);
            if rest == 0 {
                head
            } else {
                format!("{head} and {}", int_words(rest))
            }
        }
        1000..=999_999 => join_scale(n, 1000, "thousand"),
        _ => join_scale(n, 1_000_000, "million"),
    }
}

fn join_scale(n: u64, scale: u64, name: &str) -> String {
    let rest = n % scale;
    let head = format!("{} {name}", int_words(n / scale));
    match rest {
        0 => head,
        1..=99 => format!("{head} and {}", int_words(rest)),
        _ => format!("{head} {}", int_words(rest)),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

// ---- time and date -------------------------------------------------------------------------------

fn time_or_date(joined: &str, now_ms: i64) -> Option<String> {
    let secs = now_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let sod = secs.rem_euclid(86_400);
    let (hh, mm) = (sod / 3600, (sod % 3600) / 60);
    let asks_time = joined.contains("what time")
        || joined.contains("the time")
        || joined.contains("time is it");
    let asks_date = joined.contains("date")
        || joined.contains("what day")
        || joined.contains("which day")
        || joined.contains("today");
    const WEEKDAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    if asks_time {
        let h12 = match hh % 12 {
            0 => 12,
            h => h,
        };
        let ampm = if hh < 12 { "AM" } else { "PM" };
        return Some(format!("It is {h12}:{mm:02} {ampm} UTC."));
    }
    if asks_date {
        let wd = WEEKDAYS[days.rem_euclid(7) as usize];
        let month = MONTHS[(m - 1) as usize];
        return Some(format!("Today is {wd}, {month} {d}, {y}."));
    }
    None
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

// ---- facts ---------------------------------------------------------------------------------------

/// (phrases that must all appear, the answer)
const FACTS: &[(&[&str], &str)] = &[
    (&["capital", "france"], "The capital of France is Paris."),
    (&["capital", "germany"], "The capital of Germany is Berlin."),
    (&["capital", "italy"], "The capital of Italy is Rome."),
    (&["capital", "spain"], "The capital of Spain is Madrid."),
    (&["capital", "japan"], "The capital of Japan is Tokyo."),
    (&["capital", "turkey"], "The capital of Turkey is Ankara."),
    (&["capital", "england"], "The capital of England is London."),
    (
        &["capital", "united kingdom"],
        "The capital of the United Kingdom is London.",
    ),
    (
        &["capital", "united states"],
        "The capital of the United States is Washington, D.C.",
    ),
    (&["capital", "canada"], "The capital of Canada is Ottawa."),
    (
        &["capital", "australia"],
        "The capital of Australia is Canberra.",
    ),
    (&["days", "week"], "There are seven days in a week."),
    (
        &["days", "year"],
        "A year has three hundred and sixty-five days, three hundred and sixty-six in a leap year.",
    ),
    (&["hours", "day"], "There are twenty-four hours in a day."),
    (&["minutes", "hour"], "There are sixty minutes in an hour."),
    (
        &["seconds", "minute"],
        "There are sixty seconds in a minute.",
    ),
    (&["months", "year"], "There are twelve months in a year."),
    (
        &["boiling", "water"],
        "Water boils at one hundred degrees Celsius at sea level.",
    ),
    (
        &["freezing", "water"],
        "Water freezes at zero degrees Celsius.",
    ),
    (
        &["speed", "light"],
        "Light travels about three hundred thousand kilometres per second.",
    ),
    (
        &["largest", "planet"],
        "Jupiter is the largest planet in the solar system.",
    ),
    (
        &["closest", "star"],
        "The closest star to Earth is the Sun; after it, Proxima Centauri.",
    ),
    (
        &["tallest", "mountain"],
        "Mount Everest is the tallest mountain above sea level.",
    ),
    (
        &["your name"],
        "I'm Parlor's offline assistant. I run on this server, with no internet.",
    ),
    (
        &["who are you"],
        "I'm Parlor's offline assistant. I run on this server, with no internet.",
    ),
    (
        &["how are you"],
        "I'm doing well, thank you. How can I help?",
    ),
    (
        &["what can you do"],
        "I can tell you the time and the date, do arithmetic, and answer a few simple facts.",
    ),
    (&["thank"], "You're welcome!"),
    (&["goodbye"], "Goodbye! Talk to you soon."),
    (&["bye"], "Goodbye! Talk to you soon."),
];

fn fact(joined: &str) -> Option<String> {
    let padded = format!(" {joined} ");
    FACTS
        .iter()
        .find(|(keys, _)| keys.iter().all(|k| padded.contains(&format!(" {k}"))))
        .map(|(_, a)| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-02 15:07:00 UTC, a Wednesday.
    const NOW: i64 = 1_796_224_020_000;

    #[test]
    fn arithmetic_in_words_and_digits() {
        assert_eq!(
            respond("what is two plus two", NOW),
            "Two plus two is four."
        );
        assert_eq!(respond("What is 2 + 2?", NOW), "Two plus two is four.");
        assert_eq!(
            respond("What's twelve times three?", NOW),
            "Twelve times three is thirty-six."
        );
        assert_eq!(
            respond("what is ten multiplied by three", NOW),
            "Ten times three is thirty."
        );
        assert_eq!(
            respond("seven divided by two", NOW),
            "Seven divided by two is three point five."
        );
        assert_eq!(
            respond("5 minus 8", NOW),
            "Five minus eight is minus three."
        );
        assert_eq!(
            respond("what is two hundred and five plus one thousand", NOW),
            "Two hundred and five plus one thousand is one thousand two hundred and five."
        );
        assert_eq!(
            respond("what is 9 / 0", NOW),
            "Nine divided by zero has no answer: you can't divide by zero."
        );
        assert_eq!(
            respond("What is 1,000 x 3?", NOW),
            "One thousand times three is three thousand."
        );
    }

    #[test]
    fn number_words_cover_the_usual_range() {
        assert_eq!(number_words(0.0), "zero");
        assert_eq!(number_words(21.0), "twenty-one");
        assert_eq!(number_words(100.0), "one hundred");
        assert_eq!(number_words(1_000_001.0), "one million and one");
        assert_eq!(number_words(2.25), "two point two five");
        assert_eq!(number_words(1.0 / 3.0), "zero point three three");
    }

    #[test]
    fn time_and_date_in_utc() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_424), (2025, 12, 2));
        assert_eq!(respond("What time is it?", NOW), "It is 3:07 PM UTC.");
        assert_eq!(
            respond("what's the date today", NOW),
            "Today is Wednesday, December 2, 2026."
        );
    }

    #[test]
    fn facts_greetings_and_fallback() {
        assert_eq!(
            respond("What is the capital of France?", NOW),
            "The capital of France is Paris."
        );
        assert_eq!(
            respond("How many days are in a week?", NOW),
            "There are seven days in a week."
        );
        assert!(respond("Hello there!", NOW).starts_with("Hello!"));
        assert!(respond("good morning", NOW).starts_with("Hello!"));
        assert_eq!(
            respond("The weather is nice.", NOW),
            "You said: The weather is nice."
        );
        assert!(respond("  ", NOW).contains("didn't catch"));
        // "this" must not match the fact "hi" greeting, nor "x" inside a word an operator.
        assert_eq!(
            respond("this is xylophone", NOW),
            "You said: this is xylophone."
        );
    }
}
