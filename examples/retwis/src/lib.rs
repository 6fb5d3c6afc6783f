//! Retwis, the Twitter clone of the Cloudburst paper, as one function whose
//! input is a command:
//!
//! - `post USER TEXT...`: a new post by USER; answers its id.
//! - `follow USER OTHER`: USER follows OTHER.
//! - `timeline USER [N]`: the N (default 10) newest posts of the users USER
//!   follows, newest first, one `id<TAB>author<TAB>text` a line.
//! - `profile USER [N]`: USER's own N newest posts, the same way.
//!
//! Keys: `retwis:next_post` (the counter posts take their ids from),
//! `post:<id>` (`author<TAB>text`), and the sets `posts:<USER>` (post ids),
//! `following:<USER>` and `followers:<USER>` (user names). Tabs and line
//! breaks in a post's text become spaces, so that a line is a post.

use squall_sdk::{Error, Result, store};

const DEFAULT_N: usize = 10;

fn handle(input: Vec<u8>) -> Result<String> {
    let input = String::from_utf8_lossy(&input);
    let input = input.trim();
    let (command, rest) = token(input);
    match command {
        "post" => {
            let (user, text) = token(rest);
            post(user, text)
        }
        "follow" => match args(rest)[..] {
            [user, other] => follow(user, other),
            _ => Err(usage("follow USER OTHER")),
        },
        "timeline" => {
            let (user, n) = user_and_n(rest, "timeline USER [N]")?;
            let mut ids = Vec::new();
            for followed in store::set_members(format!("following:{user}"))? {
                ids.extend(post_ids(&String::from_utf8_lossy(&followed))?);
            }
            render(ids, n)
        }
        "profile" => {
            let (user, n) = user_and_n(rest, "profile USER [N]")?;
            render(post_ids(user)?, n)
        }
        "" => Err(Error::msg("no command: post, follow, timeline or profile")),
        other => Err(Error::msg(format!("unknown command {other:?}: post, follow, timeline or profile"))),
    }
}

/// The first whitespace-separated word of `s` and what follows it (trimmed).
fn token(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

fn args(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

fn usage(form: &str) -> Error {
    Error::msg(format!("usage: {form}"))
}

fn user_and_n<'a>(rest: &'a str, form: &str) -> Result<(&'a str, usize)> {
    match args(rest)[..] {
        [user] => Ok((user, DEFAULT_N)),
        [user, n] => Ok((user, n.parse().map_err(|_| Error::msg(format!("N must be a count, not {n:?}")))?)),
        _ => Err(usage(form)),
    }
}

fn post(user: &str, text: &str) -> Result<String> {
    if user.is_empty() || text.is_empty() {
        return Err(usage("post USER TEXT..."));
    }
    let text: String = text.chars().map(|c| if c == '\t' || c == '\n' || c == '\r' { ' ' } else { c }).collect();
    // `increment` alone does not make two concurrent posts see different
    // values (increments never conflict); reading the counter too puts it
    // among the keys checked at commit, so a post whose id another post
    // took meanwhile runs again with the next one.
    store::counter("retwis:next_post")?;
    let id = store::increment("retwis:next_post", 1)?;
    store::put(format!("post:{id}"), format!("{user}\t{text}"))?;
    store::set_add(format!("posts:{user}"), &[id.to_string()])?;
    Ok(id.to_string())
}

fn follow(user: &str, other: &str) -> Result<String> {
    store::set_add(format!("following:{user}"), &[other])?;
    store::set_add(format!("followers:{other}"), &[user])?;
    Ok(format!("{user} follows {other}"))
}

/// The ids of `user`'s posts, in no order.
fn post_ids(user: &str) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    for m in store::set_members(format!("posts:{user}"))? {
        let m = String::from_utf8_lossy(&m);
        ids.push(m.parse().map_err(|_| Error::msg(format!("posts:{user} holds {m:?}, not a post id")))?);
    }
    Ok(ids)
}

/// The `n` newest of `ids`, newest first, one `id<TAB>author<TAB>text` a line.
fn render(mut ids: Vec<i64>, n: usize) -> Result<String> {
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    let mut out = String::new();
    for id in ids.into_iter().take(n) {
        let body =
            store::get_string(format!("post:{id}"))?.ok_or_else(|| Error::msg(format!("post {id} is missing")))?;
        out.push_str(&format!("{id}\t{body}\n"));
    }
    Ok(out)
}

squall_sdk::function!(handle);
