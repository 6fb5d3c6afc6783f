//! The composed examples end to end on a real node: a word count as a map
//! job whose reduce is the counters' merge, and Retwis (the Twitter clone of
//! the Cloudburst paper) as deployed by `squall up --examples`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{TestNode, http, json};
use redis::Commands;

/// A text with what the splitting rule has to get right: capitals,
/// apostrophes inside and around words, digits, hyphens, punctuation,
/// quotes and backslashes (escaped in JSON), tabs and line breaks, and
/// letters outside ASCII (which separate words) up to an emoji (a
/// surrogate pair when escaped as `\uXXXX`).
const PASSAGE: &str = "To be, or not to be, that is the question:\n\
Whether 'tis nobler in the mind to suffer\tthe slings and arrows of outrageous fortune,\n\
Or to take arms against a sea of troubles, and by opposing end them? To die: to sleep;\n\
No more; and by a sleep to say we end the heart-ache and the thousand natural shocks\n\
That flesh is heir to, 'tis a consummation devoutly to be wish'd. \"Quoted\" words, \
a C:\\path\\to\\file, the 2nd and 3rd of 10 e-mails -- don't, won't, o'er ''' and '' \
naïve café über straße 🙂 smile, ROCK'N'ROLL, rock'n'roll; x86_64 i386 v1.2.3.\n";

/// The words of `text` by the rule of examples/wordcount: runs of ASCII
/// letters, digits and apostrophes, lowercased, apostrophes at the ends dropped.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// `s` as a JSON string with everything outside printable ASCII escaped as
/// `\uXXXX` (UTF-16 code units, so an emoji is a surrogate pair).
fn ascii_json(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// `text` cut into about `n` chunks, each cut at whitespace (no word spans two chunks).
fn chunks(text: &str, n: usize) -> Vec<&str> {
    let target = text.len() / n;
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = target.min(rest.len());
        while cut < rest.len() && !(rest.is_char_boundary(cut) && rest[cut..].starts_with(char::is_whitespace)) {
            cut += 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        out.push(chunk);
        rest = tail;
    }
    out
}

fn deploy(node: &TestNode, name: &str, wasm: &[u8]) {
    let (status, _, body) = http(node, "PUT", &format!("/v1/functions/{name}"), wasm);
    assert!(status == 200 || status == 201, "deploy {name}: {status} {}", String::from_utf8_lossy(&body));
}

fn invoke(node: &TestNode, name: &str, input: &str) -> (u16, String) {
    let (status, _, body) = http(node, "POST", &format!("/v1/functions/{name}/invoke"), input.as_bytes());
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn ok(node: &TestNode, name: &str, input: &str) -> String {
    let (status, body) = invoke(node, name, input);
    assert_eq!(status, 200, "{name} {input:?}: {body}");
    body
}

fn wait_done(node: &TestNode, id: &str) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, _, body) = http(node, "GET", &format!("/v1/jobs/{id}"), b"");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let j = json(&body);
        if j["state"] != "running" {
            return j;
        }
        assert!(Instant::now() < until, "job {id} still running: {j}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every `wc:*` counter in the store, as word → count.
fn stored_counts(node: &TestNode) -> BTreeMap<String, i64> {
    let mut redis = node.redis();
    let keys: Vec<String> = redis.keys("wc:*").unwrap();
    keys.into_iter()
        .map(|k| {
            let n: i64 = redis.get(&k).unwrap();
            (k.strip_prefix("wc:").unwrap().to_string(), n)
        })
        .collect()
}

#[test]
fn wordcount_as_a_map_job_counts_every_word_of_a_text_exactly() {
    let node = TestNode::start(&[]);
    deploy(&node, "wordcount", squall_guests::WORDCOUNT);

    // The passage a few times over, each copy with words of its own, so
    // that counts differ from word to word.
    let text: String = (1..=6).map(|i| format!("{PASSAGE}Copy number{i} of {i} copies, copy{i}.\n")).collect();
    let pieces = chunks(&text, 20);
    assert!((18..=22).contains(&pieces.len()), "{} chunks", pieces.len());
    assert_eq!(pieces.concat(), text);
    let want_words = words(&text);
    assert_eq!(pieces.iter().map(|p| words(p).len()).sum::<usize>(), want_words.len(), "a cut split a word");
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for w in &want_words {
        *want.entry(w.clone()).or_default() += 1;
    }

    // Inputs as JSON strings, half of them with everything outside ASCII
    // escaped: the function gets the JSON text and has to decode it.
    let inputs: Vec<String> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| if i % 2 == 0 { serde_json::to_string(p).unwrap() } else { ascii_json(p) })
        .collect();
    let body = format!(r#"{{"function": "wordcount", "inputs": [{}]}}"#, inputs.join(","));
    let (status, _, resp) = http(&node, "POST", "/v1/jobs", body.as_bytes());
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&resp));
    let id = json(&resp)["id"].as_str().unwrap().to_string();
    let j = wait_done(&node, &id);
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(j["counts"]["done"], pieces.len() as u64, "{j}");

    // Each element answered its chunk's number of words.
    let (status, _, body) = http(&node, "GET", &format!("/v1/jobs/{id}/results?limit=100"), b"");
    assert_eq!(status, 200);
    let results = json(&body)["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), pieces.len());
    for (r, p) in results.iter().zip(&pieces) {
        assert_eq!(r["output"].as_str(), Some(words(p).len().to_string().as_str()), "{r}");
    }

    // The counters are the word count: every word, and nothing else.
    let got = stored_counts(&node);
    assert_eq!(got, want);
    assert_eq!(got["to"], 6 * 10, "{got:?}");
    for w in [
        "tis",
        "wish'd",
        "don't",
        "o'er",
        "rock'n'roll",
        "2nd",
        "10",
        "x86",
        "64",
        "v1",
        "na",
        "ve",
        "caf",
        "stra",
        "quoted",
        "path",
    ] {
        assert!(got.contains_key(w), "{w} is a word: {got:?}");
    }
    for w in ["'tis", "naïve", "café", "c:", "e-mails", "x86_64", "'", "u00ef", "ud83d"] {
        assert!(!got.contains_key(w), "{w} is not a word");
    }
    assert_eq!(got["rock'n'roll"], 2 * 6);

    // Raw text (not JSON) is read as it is, and adds to the same counters.
    assert_eq!(ok(&node, "wordcount", "To be! TO BE?"), "4");
    assert_eq!(node.redis().get::<_, i64>("wc:to").unwrap(), 6 * 10 + 2);
    assert_eq!(ok(&node, "wordcount", ""), "0");
}

#[test]
fn retwis_timelines_show_the_posts_of_whom_one_follows_newest_first() {
    // Deployed by --examples, as `squall up --examples` would.
    let node = TestNode::start(&["--examples"]);

    assert_eq!(ok(&node, "retwis", "follow alice carol"), "alice follows carol");
    assert_eq!(ok(&node, "retwis", "follow bob carol"), "bob follows carol");
    let mut followers: Vec<String> = node.redis().smembers("followers:carol").unwrap();
    followers.sort();
    assert_eq!(followers, ["alice", "bob"]);

    let texts = ["first post", "second  post, two spaces", "third\tpost with a tab"];
    let ids: Vec<i64> =
        texts.iter().map(|t| ok(&node, "retwis", &format!("post carol {t}")).parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    // Someone nobody follows: not on alice's or bob's timeline.
    ok(&node, "retwis", "post dave unseen");

    let want: String =
        ids.iter().zip(texts).rev().map(|(id, t)| format!("{id}\tcarol\t{}\n", t.replace('\t', " "))).collect();
    assert_eq!(ok(&node, "retwis", "timeline alice"), want);
    assert_eq!(ok(&node, "retwis", "timeline bob"), want);
    assert_eq!(ok(&node, "retwis", "profile carol"), want);
    let newest_two: String = want.lines().take(2).map(|l| format!("{l}\n")).collect();
    assert_eq!(ok(&node, "retwis", "timeline alice 2"), newest_two);
    assert_eq!(ok(&node, "retwis", "timeline carol"), "", "carol follows no one");

    // What the store holds, seen from Redis.
    let post: String = node.redis().get(format!("post:{}", ids[0])).unwrap();
    assert_eq!(post, "carol\tfirst post");
    let posts: BTreeSet<String> = node.redis().smembers("posts:carol").unwrap();
    assert_eq!(posts, ids.iter().map(i64::to_string).collect());

    for bad in ["tweet carol hello", "", "follow alice", "timeline alice many", "post carol"] {
        let (status, _, body) = http(&node, "POST", "/v1/functions/retwis/invoke", bad.as_bytes());
        assert_eq!(status, 422, "{bad:?}: {}", String::from_utf8_lossy(&body));
        assert_eq!(json(&body)["error"]["code"], "function_error", "{bad:?}");
    }
    let (_, _, body) = http(&node, "POST", "/v1/functions/retwis/invoke", b"tweet carol hello");
    assert!(json(&body)["error"]["message"].as_str().unwrap().contains("unknown command \"tweet\""));
}

#[test]
fn concurrent_retwis_posts_get_distinct_ids() {
    let node = TestNode::start(&[]);
    deploy(&node, "retwis", squall_guests::RETWIS);
    let (threads, each) = (8, 25);
    let ids: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let node = &node;
                s.spawn(move || {
                    (0..each)
                        .map(|i| ok(node, "retwis", &format!("post u{t} post {i} of u{t}")).parse::<i64>().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let distinct: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), threads * each, "two posts got the same id: {ids:?}");
    assert_eq!(distinct, (1..=(threads * each) as i64).collect());
    // Each post is where its id says, by its author.
    for t in 0..threads {
        let profile = ok(&node, "retwis", &format!("profile u{t} {each}"));
        let lines: Vec<&str> = profile.lines().collect();
        assert_eq!(lines.len(), each);
        for (line, i) in lines.iter().zip((0..each).rev()) {
            assert!(line.ends_with(&format!("\tu{t}\tpost {i} of u{t}")), "{line}");
        }
    }
}
