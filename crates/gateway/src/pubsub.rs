//! Pub/sub: channels, patterns and shard channels, within a namespace.
//!
//! A subscriber is a connection with a bounded queue: a publisher puts the
//! message in each receiver's queue and goes on (it never waits for a
//! slow reader), and the connection writes its queue out between commands.
//! A subscriber whose unwritten messages pass the hard limit, or stay over
//! the soft limit for its time (Redis's `client-output-buffer-limit pubsub`,
//! 32 MiB, and 8 MiB for 60 s, by default), is disconnected, as Redis does,
//! and counted in `squall_resp_pubsub_slow_closed_total` (by its connection).
//!
//! Channels belong to a namespace: a connection publishes to, and hears
//! from, its own namespace (a tenant does not hear another's). Redis's
//! channels ignore `SELECT`; here a client of database 1 does not hear a
//! publisher of database 0.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{Notify, mpsc};

/// The three kinds of subscription, each with its own names and replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Channel,
    Pattern,
    Shard,
}

impl Kind {
    /// The word of a subscribe and unsubscribe reply.
    pub fn words(self) -> (&'static str, &'static str) {
        match self {
            Kind::Channel => ("subscribe", "unsubscribe"),
            Kind::Pattern => ("psubscribe", "punsubscribe"),
            Kind::Shard => ("ssubscribe", "sunsubscribe"),
        }
    }
}

/// A message on its way to one subscriber.
#[derive(Debug, Clone)]
pub enum Message {
    /// To a channel (`message`) or a shard channel (`smessage`).
    Channel { shard: bool, channel: Bytes, payload: Bytes },
    /// To a channel, heard through a pattern (`pmessage`).
    Pattern { pattern: Bytes, channel: Bytes, payload: Bytes },
}

impl Message {
    /// What it holds, for the queue's bound.
    pub fn bytes(&self) -> usize {
        const FRAMING: usize = 48;
        FRAMING
            + match self {
                Message::Channel { channel, payload, .. } => channel.len() + payload.len(),
                Message::Pattern { pattern, channel, payload } => pattern.len() + channel.len() + payload.len(),
            }
    }
}

/// How much a subscriber may leave unwritten: Redis's
/// `client-output-buffer-limit pubsub`, in the normal class's shape.
pub type Limit = crate::redis::OutputLimit;

/// Redis's default for subscribers: 32 MiB, or 8 MiB for 60 s.
pub const DEFAULT_LIMIT: Limit = Limit { hard: 32 << 20, soft: 8 << 20, soft_seconds: 60 };

/// One subscribed connection's end of the broker: its queue and its state.
pub struct Subscriber {
    id: u64,
    tx: mpsc::UnboundedSender<Message>,
    /// Bytes queued and not yet written to the client.
    queued: AtomicUsize,
    /// Milliseconds since `born` when the queue went over the soft limit
    /// (0: it is not over).
    over_soft_since: AtomicU64,
    born: Instant,
    /// Set once the subscriber fell too far behind: it gets no more
    /// messages, and its connection closes.
    slow: AtomicBool,
    /// Wakes the connection to close it.
    pub cut: Notify,
}

impl Subscriber {
    /// The connection wrote out messages of `bytes`.
    pub fn written(&self, bytes: usize, limit: Limit) {
        let left = self.queued.fetch_sub(bytes, Ordering::Relaxed).saturating_sub(bytes);
        // Back under the soft limit: its time starts again, as in Redis.
        if left <= limit.soft {
            self.over_soft_since.store(0, Ordering::Relaxed);
        }
    }

    pub fn is_slow(&self) -> bool {
        self.slow.load(Ordering::Relaxed)
    }
}

/// Who listens to one name: subscribers by connection id.
type Listeners = HashMap<u64, Arc<Subscriber>>;

/// One namespace's subscriptions.
#[derive(Default)]
struct Scope {
    channels: HashMap<Bytes, Listeners>,
    patterns: HashMap<Bytes, Listeners>,
    shards: HashMap<Bytes, Listeners>,
}

impl Scope {
    fn of(&mut self, kind: Kind) -> &mut HashMap<Bytes, Listeners> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shards,
        }
    }

    fn get(&self, kind: Kind) -> &HashMap<Bytes, Listeners> {
        match kind {
            Kind::Channel => &self.channels,
            Kind::Pattern => &self.patterns,
            Kind::Shard => &self.shards,
        }
    }

    fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.patterns.is_empty() && self.shards.is_empty()
    }
}

/// The node's subscriptions.
pub struct Broker {
    scopes: Mutex<HashMap<Bytes, Scope>>,
    limit: Mutex<Limit>,
    /// `notify-keyspace-events`, as flags.
    notify: tokio::sync::watch::Sender<u16>,
}

impl Default for Broker {
    fn default() -> Self {
        Broker::new(DEFAULT_LIMIT)
    }
}

impl Broker {
    pub fn new(limit: Limit) -> Self {
        Broker { scopes: Mutex::default(), limit: Mutex::new(limit), notify: tokio::sync::watch::Sender::new(0) }
    }

    /// `CONFIG SET notify-keyspace-events`.
    pub fn set_notify(&self, text: &str) -> Result<(), String> {
        let flags = notify::parse(text)?;
        self.notify.send_replace(flags);
        Ok(())
    }

    /// `CONFIG GET notify-keyspace-events`.
    pub fn notify(&self) -> String {
        notify::render(*self.notify.borrow())
    }

    pub fn limit(&self) -> Limit {
        *self.limit.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_limit(&self, limit: Limit) {
        *self.limit.lock().unwrap_or_else(|e| e.into_inner()) = limit;
    }

    /// A new subscriber for connection `id`, and the queue it reads.
    pub fn subscriber(id: u64) -> (Arc<Subscriber>, mpsc::UnboundedReceiver<Message>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let sub = Subscriber {
            id,
            tx,
            queued: AtomicUsize::new(0),
            over_soft_since: AtomicU64::new(0),
            born: Instant::now(),
            slow: AtomicBool::new(false),
            cut: Notify::new(),
        };
        (Arc::new(sub), rx)
    }

    fn scopes(&self) -> std::sync::MutexGuard<'_, HashMap<Bytes, Scope>> {
        self.scopes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `sub` as a listener of `name`.
    pub fn subscribe(&self, scope: &Bytes, kind: Kind, name: Bytes, sub: &Arc<Subscriber>) {
        let mut scopes = self.scopes();
        let listeners = scopes.entry(scope.clone()).or_default().of(kind).entry(name).or_default();
        listeners.insert(sub.id, sub.clone());
    }

    /// Removes connection `id` as a listener of `name`.
    pub fn unsubscribe(&self, scope: &Bytes, kind: Kind, name: &Bytes, id: u64) {
        let mut scopes = self.scopes();
        let Some(s) = scopes.get_mut(scope) else { return };
        let names = s.of(kind);
        if let Some(listeners) = names.get_mut(name) {
            listeners.remove(&id);
            if listeners.is_empty() {
                names.remove(name);
            }
        }
        if s.is_empty() {
            scopes.remove(scope);
        }
    }

    /// PUBLISH (or SPUBLISH, `shard`): the message to every listener of the
    /// channel and (not for a shard channel) of every pattern it matches.
    /// Returns how many receive it.
    pub fn publish(&self, scope: &Bytes, shard: bool, channel: &Bytes, payload: &Bytes) -> usize {
        let mut to: Vec<(Arc<Subscriber>, Message)> = Vec::new();
        {
            let scopes = self.scopes();
            let Some(s) = scopes.get(scope) else { return 0 };
            let kind = if shard { Kind::Shard } else { Kind::Channel };
            if let Some(listeners) = s.get(kind).get(channel) {
                for sub in listeners.values() {
                    let m = Message::Channel { shard, channel: channel.clone(), payload: payload.clone() };
                    to.push((sub.clone(), m));
                }
            }
            if !shard {
                for (pattern, listeners) in &s.patterns {
                    if squall_store::glob_matches(pattern, channel) {
                        for sub in listeners.values() {
                            let m = Message::Pattern {
                                pattern: pattern.clone(),
                                channel: channel.clone(),
                                payload: payload.clone(),
                            };
                            to.push((sub.clone(), m));
                        }
                    }
                }
            }
        }
        let limit = self.limit();
        let n = to.len();
        for (sub, m) in to {
            self.deliver(&sub, m, limit);
        }
        n
    }

    /// Queues `m` for `sub`, or cuts `sub` off if it is too far behind.
    fn deliver(&self, sub: &Subscriber, m: Message, limit: Limit) {
        if sub.is_slow() {
            return;
        }
        let size = m.bytes();
        let queued = sub.queued.fetch_add(size, Ordering::Relaxed) + size;
        let now = sub.born.elapsed().as_millis() as u64 + 1;
        let mut cut = limit.hard > 0 && queued > limit.hard;
        if !cut && limit.soft > 0 && queued > limit.soft {
            let since = sub.over_soft_since.load(Ordering::Relaxed);
            if since == 0 {
                sub.over_soft_since.store(now, Ordering::Relaxed);
            } else {
                // Another publisher may have set it after `now` was read.
                cut = now.saturating_sub(since) >= limit.soft_seconds.saturating_mul(1000);
            }
        } else if queued <= limit.soft {
            sub.over_soft_since.store(0, Ordering::Relaxed);
        }
        if cut {
            if !sub.slow.swap(true, Ordering::Relaxed) {
                sub.cut.notify_one();
                tracing::warn!(
                    client = sub.id,
                    bytes = queued,
                    "subscriber closed for overcoming of output buffer limits (client-output-buffer-limit pubsub)"
                );
            }
            return;
        }
        // A closed queue is a connection on its way out.
        let _ = sub.tx.send(m);
    }

    /// PUBSUB CHANNELS and SHARDCHANNELS: the names with a listener,
    /// matching `pattern` if one is given.
    pub fn channels(&self, scope: &Bytes, shard: bool, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let scopes = self.scopes();
        let Some(s) = scopes.get(scope) else { return Vec::new() };
        let names = s.get(if shard { Kind::Shard } else { Kind::Channel });
        names.keys().filter(|c| pattern.is_none_or(|p| squall_store::glob_matches(p, c))).cloned().collect()
    }

    /// PUBSUB NUMSUB and SHARDNUMSUB: listeners of each name.
    pub fn numsub(&self, scope: &Bytes, shard: bool, names: &[Bytes]) -> Vec<(Bytes, usize)> {
        let scopes = self.scopes();
        let kind = if shard { Kind::Shard } else { Kind::Channel };
        let count = |n: &Bytes| scopes.get(scope).and_then(|s| s.get(kind).get(n)).map_or(0, HashMap::len);
        names.iter().map(|n| (n.clone(), count(n))).collect()
    }

    /// PUBSUB NUMPAT: patterns with a listener.
    pub fn numpat(&self, scope: &Bytes) -> usize {
        self.scopes().get(scope).map_or(0, |s| s.patterns.len())
    }

    /// Channels and patterns with a listener, node-wide (for INFO).
    pub fn totals(&self) -> (usize, usize, usize) {
        let scopes = self.scopes();
        scopes
            .values()
            .fold((0, 0, 0), |(c, p, s), sc| (c + sc.channels.len(), p + sc.patterns.len(), s + sc.shards.len()))
    }
}

/// Keyspace notifications (`notify-keyspace-events`): Redis's flags, and
/// the task that turns the store's key events into messages on
/// `__keyspace@<db>__:<key>` and `__keyevent@<db>__:<event>`.
pub mod notify {
    use super::Broker;
    use bytes::{BufMut, Bytes, BytesMut};
    use squall_store::events::{Class, KeyEvent};
    use std::sync::Arc;

    const KEYSPACE: u16 = 1 << 0;
    const KEYEVENT: u16 = 1 << 1;
    /// The classes, in the order Redis shows them, with their letters.
    const CLASSES: [(u8, u16); 11] = [
        (b'g', 1 << 2),
        (b'$', 1 << 3),
        (b'l', 1 << 4),
        (b's', 1 << 5),
        (b'h', 1 << 6),
        (b'z', 1 << 7),
        (b'x', 1 << 8),
        (b'e', 1 << 9),
        (b't', 1 << 10),
        (b'd', 1 << 11),
        (b'n', 1 << 12),
    ];
    const MISS: u16 = 1 << 13;
    /// `A`: every class but `n` (new keys) and `m` (misses).
    const ALL: u16 =
        (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11);

    /// Redis's flags as bits; an unknown letter is Redis's error.
    pub fn parse(text: &str) -> Result<u16, String> {
        let mut flags = 0;
        for c in text.bytes() {
            flags |= match c {
                b'A' => ALL,
                b'K' => KEYSPACE,
                b'E' => KEYEVENT,
                b'm' => MISS,
                c => match CLASSES.iter().find(|(l, _)| *l == c) {
                    Some((_, bit)) => *bit,
                    None => {
                        return Err("CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - \
                                    Invalid event class character. Use 'Ag$lshzxeKEtmdn'."
                            .into());
                    }
                },
            };
        }
        Ok(flags)
    }

    /// The flags as `CONFIG GET` shows them (Redis's order).
    pub fn render(flags: u16) -> String {
        let mut out = String::new();
        if flags & ALL == ALL {
            out.push('A');
        }
        for (letter, bit) in CLASSES {
            if flags & bit != 0 && (flags & ALL != ALL || bit & ALL == 0) {
                out.push(letter as char);
            }
        }
        for (letter, bit) in [('K', KEYSPACE), ('E', KEYEVENT), ('m', MISS)] {
            if flags & bit != 0 {
                out.push(letter);
            }
        }
        out
    }

    fn class_bit(class: Class) -> u16 {
        let letter = match class {
            Class::Generic => b'g',
            Class::String => b'$',
            Class::Set => b's',
            Class::Hash => b'h',
            Class::List => b'l',
            Class::ZSet => b'z',
            Class::Expired => b'x',
        };
        CLASSES.iter().find(|(l, _)| *l == letter).map_or(0, |(_, b)| *b)
    }

    /// The database a namespace is, in a channel's name: Redis's numbered
    /// ones by number (the default namespace is 0), others by name.
    fn db(ns: &[u8]) -> &[u8] {
        if ns == squall_store::DEFAULT_NS { b"0" } else { ns }
    }

    fn channel(prefix: &[u8], ns: &[u8], name: &[u8]) -> Bytes {
        let db = db(ns);
        let mut b = BytesMut::with_capacity(prefix.len() + db.len() + name.len() + 3);
        b.put_slice(prefix);
        b.put_slice(db);
        b.put_slice(b"__:");
        b.put_slice(name);
        b.freeze()
    }

    /// Publishes one event as the flags say.
    fn publish(broker: &Broker, flags: u16, e: &KeyEvent) {
        if flags & class_bit(e.class) == 0 {
            return;
        }
        if flags & KEYSPACE != 0 {
            let ch = channel(b"__keyspace@", &e.ns, &e.key);
            broker.publish(&e.ns, false, &ch, &Bytes::from_static(e.event.as_bytes()));
        }
        if flags & KEYEVENT != 0 {
            let ch = channel(b"__keyevent@", &e.ns, e.event.as_bytes());
            broker.publish(&e.ns, false, &ch, &e.key);
        }
    }

    /// Runs until `stop`: listens to the store's key events while any
    /// notification is on (K or E, and a class), and publishes them.
    pub async fn run(broker: Arc<Broker>, store: squall_store::Handle, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut flags_rx = broker.notify.subscribe();
        loop {
            let flags = *flags_rx.borrow_and_update();
            let on = flags & (KEYSPACE | KEYEVENT) != 0 && flags & !(KEYSPACE | KEYEVENT | MISS) != 0;
            if !on {
                tokio::select! {
                    r = flags_rx.changed() => if r.is_err() { return },
                    _ = stop.wait_for(|s| *s) => return,
                }
                continue;
            }
            let mut events = store.key_events();
            loop {
                tokio::select! {
                    e = events.next() => match e {
                        Some(Ok(e)) => publish(&broker, flags, &e),
                        Some(Err(missed)) => {
                            tracing::warn!(missed, "keyspace notifications fell behind the writes; some were not sent");
                        }
                        None => return,
                    },
                    r = flags_rx.changed() => {
                        if r.is_err() {
                            return;
                        }
                        break;
                    }
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }
}
