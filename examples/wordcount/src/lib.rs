//! Counts the words of a chunk of text into the store, one counter per word
//! (`wc:<word>`), and answers with the number of words in the chunk.
//!
//! The input is the text, raw or as a JSON string (a map job passes each
//! input as its JSON text: `"some words"`, quotes and all). A word is a run
//! of ASCII letters, digits and apostrophes, lowercased, with the
//! apostrophes at its ends dropped (`'tis` is `tis`, `don't` stays);
//! everything else separates words.
//!
//! Run as a map job over the chunks of a text, this is a word count whose
//! reduce is the counters' merge: the chunks' increments all add up,
//! whatever order and whichever shard they commit in.

use std::collections::BTreeMap;

fn handle(input: Vec<u8>) -> squall_sdk::Result<String> {
    let text = match serde_json::from_slice::<String>(&input) {
        Ok(decoded) => decoded,
        Err(_) => String::from_utf8_lossy(&input).into_owned(),
    };
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut total = 0u64;
    for word in words(&text) {
        *counts.entry(word).or_default() += 1;
        total += 1;
    }
    for (word, n) in &counts {
        squall_sdk::store::increment(format!("wc:{word}"), *n)?;
    }
    Ok(total.to_string())
}

/// The words of `text`, lowercased, in order.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
}

squall_sdk::function!(handle);
