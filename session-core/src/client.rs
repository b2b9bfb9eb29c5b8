//! The client's connection state machine, sans-IO in the quinn-proto style.
//!
//! [`ClientSession`] decides which server to connect to, when to send the
//! handshake and pings, when to give up on a server and when the session is
//! lost. It owns no socket and reads no clock; the driver (a tokio task in
//! `session-client`, or a test harness with a virtual clock) moves bytes and
//! time in and out.
//!
//! # States
//!
//! ```text
//! NotConnected ─▶ Connecting ─▶ Connected ◀──────▶ Suspended ─▶ Expired
//!                     │             │                   │
//!                     └─────────────┴── close() ────────┴─▶ Closed
//!        handshake refused: Expired or AuthFailed (from any live state)
//! ```
//!
//! `Suspended` means nothing was heard from the server for 2/3·T (or the
//! transport broke): the session may still be alive on the servers but locks
//! are no longer safe (kazoo and Curator's SUSPENDED, Chubby's jeopardy). The
//! client then tries the next host with the same id and password, the first
//! time at once. After 4/3·T without hearing any server it declares the
//! session `Expired` on its own (ZOOKEEPER-4508).
//!
//! [`ClientSession::close`] reaches a server if one answers before its
//! deadline: from `Suspended` it goes on reattaching, only to send the close.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use crate::{ClientTimings, ConnectString, SessionId, SessionPassword};

/// Wait after trying every host once without success, at most; and the
/// upper bound (exclusive) of the random wait before an attempt, at most,
/// unless [`ClientSession::with_max_jitter`] says otherwise. ZooKeeper's
/// client waits up to a second each time; both are also bounded by a tenth
/// of the session timeout (the negotiated one once known), so that a client
/// whose server died keeps trying often enough to be back within 2/3·T while
/// the others elect a leader (a client with T = 4 s waits at most 400 ms).
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How a [`ClientSession`] is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Number of hosts in the connect string; actions name hosts by index.
    pub hosts: NonZeroUsize,
    /// The session timeout to request (the server negotiates it).
    pub session_timeout: Duration,
    /// Seed of the host shuffle and of the attempt delays, so runs replay.
    pub rng_seed: u64,
}

impl ClientConfig {
    /// A configuration for the hosts of `servers`.
    #[must_use]
    pub fn new(servers: &ConnectString, session_timeout: Duration, rng_seed: u64) -> Self {
        Self {
            hosts: NonZeroUsize::new(servers.hosts().len()).unwrap_or(NonZeroUsize::MIN),
            session_timeout,
            rng_seed,
        }
    }
}

/// Where the client stands with its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// Created, no attempt made yet.
    NotConnected,
    /// Trying servers, no session yet.
    Connecting,
    /// A server holds the session and answers.
    Connected,
    /// Cut off from the server for 2/3·T or more: the session may be alive, but
    /// do not trust locks. Reattaching elsewhere with the same id.
    Suspended,
    /// The session is gone: a server said so, or no server answered for 4/3·T.
    /// Terminal.
    Expired,
    /// Closed by [`ClientSession::close`]. Terminal.
    Closed,
    /// A server refused the session's password. Terminal.
    AuthFailed,
}

impl ClientState {
    /// Whether no further change can happen.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Expired | Self::Closed | Self::AuthFailed)
    }
}

/// What the first frame on a new transport asks for.
#[derive(Debug, Clone, Copy)]
pub struct Handshake {
    /// `None` for a new session; the id and password to reattach otherwise.
    pub session: Option<(SessionId, SessionPassword)>,
    /// The timeout to request (negotiated again on every reattach).
    pub requested_timeout: Duration,
}

/// Why a server refused the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The session is expired (or unknown) on the servers.
    Expired,
    /// The password was wrong.
    AuthFailed,
}

/// Something the driver must do, from [`ClientSession::poll_action`].
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// Open a transport to host `host` (an index into the connect string's
    /// hosts, resolving the name again); report the outcome with
    /// [`ClientSession::handle_connected`] or
    /// [`ClientSession::handle_connect_failed`]. The state machine gives up on
    /// its own at `deadline`.
    Connect {
        /// Index of the host in the connect string.
        host: usize,
        /// When this attempt is abandoned.
        deadline: Instant,
    },
    /// Send the handshake as the first frame.
    SendHandshake(Handshake),
    /// Send a ping.
    SendPing,
    /// Send a close-session request; report the server's acknowledgement
    /// with [`ClientSession::handle_close_acknowledged`].
    SendClose,
    /// Close the current transport (after sending anything queued before).
    DropTransport,
}

/// Something the application may want to know, from [`ClientSession::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// The state changed to this one (never twice the same in a row).
    StateChanged(ClientState),
}

#[derive(Debug, Clone, Copy)]
enum Link {
    /// No transport; the next attempt starts at `at` (`None` when terminal).
    Idle { at: Option<Instant> },
    /// Waiting for the transport to `host` to open.
    Connecting { host: usize, deadline: Instant },
    /// Transport open, handshake sent, waiting for the reply.
    Handshaking { host: usize, deadline: Instant },
    /// Handshake accepted.
    Established { host: usize },
}

/// The client side of one session: a sans-IO state machine.
///
/// Besides its constructors (and [`with_max_jitter`](Self::with_max_jitter),
/// applied to a new one), its methods come in four kinds:
///
/// - **getters** (`&self`): [`state`](Self::state), [`session_id`](Self::session_id),
///   [`password`](Self::password), [`negotiated_timeout`](Self::negotiated_timeout),
///   [`timings`](Self::timings), [`current_host`](Self::current_host),
///   [`host_order`](Self::host_order), [`max_jitter`](Self::max_jitter),
///   [`is_closing`](Self::is_closing);
/// - **inputs** `handle_*(…, now)`: what happened on the transport, and
///   [`handle_timeout`](Self::handle_timeout) when [`poll_timeout`](Self::poll_timeout)
///   is reached (a spurious call is harmless);
/// - **commands**: [`close`](Self::close);
/// - **outputs** `poll_*`: after any input or command, drain
///   [`poll_action`](Self::poll_action) until `None` and do each action in order,
///   drain [`poll_event`](Self::poll_event), then sleep until
///   [`poll_timeout`](Self::poll_timeout).
///
/// Hosts are shuffled once with the configured seed and tried round-robin.
/// The very first attempt, and the first after losing an established
/// connection, start at once; every other waits a random time under
/// `min(1 s, T/10)` (the jitter, see [`with_max_jitter`](Self::with_max_jitter)),
/// and after a full cycle without success `min(1 s, T/10)` more. Each
/// attempt may take `T / hosts` to connect and `2/3·T` to get the handshake
/// reply. While connected, a ping goes out when nothing was sent for `T/3`.
///
/// ```
/// use std::time::{Duration, Instant};
/// use session_core::{
///     Action, ClientConfig, ClientEvent, ClientSession, ClientState, ConnectString,
///     SessionId, SessionPassword,
/// };
///
/// let servers: ConnectString = "a:2181,b:2181".parse()?;
/// let start = Instant::now();
/// let mut client = ClientSession::new(ClientConfig::new(&servers, Duration::from_secs(6), 7), start);
///
/// let Some(Action::Connect { host, .. }) = client.poll_action() else { panic!("connects first") };
/// assert!(host < 2);
/// client.handle_connected(start);
/// let Some(Action::SendHandshake(handshake)) = client.poll_action() else { panic!("then handshakes") };
/// assert!(handshake.session.is_none());
///
/// let id = SessionId::from_u64(0x0100_0000_0001_0000);
/// client.handle_handshake_accepted(id, SessionPassword::from_bytes([1; 16]), Duration::from_secs(6), start);
/// assert_eq!(client.state(), ClientState::Connected);
/// assert_eq!(client.poll_event(), Some(ClientEvent::StateChanged(ClientState::Connecting)));
/// assert_eq!(client.poll_event(), Some(ClientEvent::StateChanged(ClientState::Connected)));
///
/// // Nothing sent for T/3: a ping is due.
/// let wake = client.poll_timeout().expect("a timer runs while connected");
/// assert_eq!(wake, start + Duration::from_secs(2));
/// client.handle_timeout(wake);
/// assert!(matches!(client.poll_action(), Some(Action::SendPing)));
/// # Ok::<(), session_core::ConnectStringError>(())
/// ```
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    rng: fastrand::Rng,
    /// Host indices in the order they are tried.
    order: Vec<usize>,
    /// Position in `order` of the current or next attempt.
    cursor: usize,
    /// Failed attempts since the last success or the last back-off.
    failures_in_cycle: usize,
    state: ClientState,
    link: Link,
    session: Option<(SessionId, SessionPassword)>,
    negotiated: Option<Duration>,
    timings: ClientTimings,
    last_heard: Instant,
    last_sent: Instant,
    /// The random wait before an attempt is under this; `None`: `min(1 s, T/10)`.
    max_jitter: Option<Duration>,
    /// Set by [`close`](Self::close): until when to try to reach a server.
    closing: Option<Instant>,
    actions: VecDeque<Action>,
    events: VecDeque<ClientEvent>,
}

impl ClientSession {
    /// A client that starts its first connect attempt at once.
    #[must_use]
    pub fn new(config: ClientConfig, now: Instant) -> Self {
        let mut rng = fastrand::Rng::with_seed(config.rng_seed);
        let mut order: Vec<usize> = (0..config.hosts.get()).collect();
        rng.shuffle(&mut order);
        let mut client = Self {
            config,
            rng,
            order,
            cursor: 0,
            failures_in_cycle: 0,
            state: ClientState::NotConnected,
            link: Link::Idle { at: Some(now) },
            session: None,
            negotiated: None,
            timings: ClientTimings::new(config.session_timeout, config.hosts.get()),
            last_heard: now,
            last_sent: now,
            max_jitter: None,
            closing: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        };
        client.handle_timeout(now);
        client
    }

    /// A client that reattaches to a session opened earlier (by another
    /// client, or before a restart of this process), starting its first
    /// attempt at once. The state goes to `Connecting`; a refused password ends
    /// in `AuthFailed`, an unknown session in `Expired`, and no server heard
    /// for 4/3 of the requested timeout in `Expired` as well.
    #[must_use]
    pub fn resume(
        config: ClientConfig,
        id: SessionId,
        password: SessionPassword,
        now: Instant,
    ) -> Self {
        let mut client = Self::new(config, now);
        client.session = Some((id, password));
        client.set_state(ClientState::Connecting);
        client
    }

    /// Bounds the random wait before each connection attempt (exclusive;
    /// `Duration::ZERO` for none) instead of the default `min(1 s, T/10)`.
    /// The pause after a full cycle of failed attempts stays
    /// `min(1 s, T/10)`, so a client whose every server refuses at once does
    /// not spin. The first attempt, and the first after losing an
    /// established connection, never wait.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use session_core::{ClientConfig, ClientSession, ConnectString};
    ///
    /// let servers: ConnectString = "a:2181,b:2181".parse()?;
    /// let config = ClientConfig::new(&servers, Duration::from_secs(6), 7);
    /// let client = ClientSession::new(config, Instant::now())
    ///     .with_max_jitter(Duration::from_millis(50));
    /// assert_eq!(client.max_jitter(), Duration::from_millis(50));
    /// # Ok::<(), session_core::ConnectStringError>(())
    /// ```
    #[must_use]
    pub fn with_max_jitter(mut self, max: Duration) -> Self {
        self.max_jitter = Some(max);
        self
    }

    // ----- getters -----

    /// The bound (exclusive) of the random wait before a connection attempt:
    /// the one given to [`with_max_jitter`](Self::with_max_jitter), or
    /// `min(1 s, T/10)` with the negotiated timeout (the requested one
    /// until a server granted the session).
    #[must_use]
    pub fn max_jitter(&self) -> Duration {
        self.max_jitter.unwrap_or_else(|| self.backoff())
    }

    /// Whether [`close`](Self::close) was called and the session is not yet
    /// closed: the client is trying to reach a server to close it.
    #[must_use]
    pub fn is_closing(&self) -> bool {
        self.closing.is_some() && !self.state.is_terminal()
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The session id, once a server granted one.
    #[must_use]
    pub fn session_id(&self) -> Option<SessionId> {
        self.session.map(|(id, _)| id)
    }

    /// The session password, once a server granted a session.
    #[must_use]
    pub fn password(&self) -> Option<SessionPassword> {
        self.session.map(|(_, password)| password)
    }

    /// The timeout the last server negotiated.
    #[must_use]
    pub fn negotiated_timeout(&self) -> Option<Duration> {
        self.negotiated
    }

    /// The timers in force (from the requested timeout until one is negotiated).
    #[must_use]
    pub fn timings(&self) -> ClientTimings {
        self.timings
    }

    /// The host of the current transport or attempt.
    #[must_use]
    pub fn current_host(&self) -> Option<usize> {
        match self.link {
            Link::Connecting { host, .. }
            | Link::Handshaking { host, .. }
            | Link::Established { host } => Some(host),
            Link::Idle { .. } => None,
        }
    }

    /// The shuffled order in which hosts are tried.
    #[must_use]
    pub fn host_order(&self) -> &[usize] {
        &self.order
    }

    // ----- inputs -----

    /// The transport asked for by [`Action::Connect`] is open.
    pub fn handle_connected(&mut self, now: Instant) {
        if let Link::Connecting { host, .. } = self.link {
            self.link = Link::Handshaking {
                host,
                deadline: now + self.timings.read_timeout,
            };
            self.last_sent = now;
            self.actions.push_back(Action::SendHandshake(Handshake {
                session: self.session,
                requested_timeout: self.config.session_timeout,
            }));
        }
    }

    /// The transport asked for by [`Action::Connect`] could not be opened.
    pub fn handle_connect_failed(&mut self, now: Instant) {
        if let Link::Connecting { .. } = self.link {
            self.attempt_failed(now, false);
        }
    }

    /// The server accepted the handshake. A different id than the one being
    /// reattached means the old session is gone: the client reports `Expired`
    /// rather than silently carrying on with a new session.
    pub fn handle_handshake_accepted(
        &mut self,
        id: SessionId,
        password: SessionPassword,
        negotiated_timeout: Duration,
        now: Instant,
    ) {
        let Link::Handshaking { host, .. } = self.link else {
            return;
        };
        if let Some((known, _)) = self.session {
            if known != id {
                self.handle_refused(Refusal::Expired, now);
                return;
            }
        }
        self.session = Some((id, password));
        self.negotiated = Some(negotiated_timeout);
        self.timings = ClientTimings::new(negotiated_timeout, self.config.hosts.get());
        self.link = Link::Established { host };
        self.failures_in_cycle = 0;
        self.last_heard = now;
        if self.closing.is_some() {
            // Reattached only to close: the application is done with it.
            self.last_sent = now;
            self.actions.push_back(Action::SendClose);
            return;
        }
        self.set_state(ClientState::Connected);
    }

    /// A server said the session is expired or the password wrong, in the
    /// handshake reply or later. Terminal.
    /// While closing, a session the servers no longer hold is what the
    /// close wanted: the state ends in `Closed`.
    pub fn handle_refused(&mut self, refusal: Refusal, _now: Instant) {
        if self.state.is_terminal() {
            return;
        }
        if self.closing.is_some() && refusal == Refusal::Expired {
            self.finish_close();
            return;
        }
        self.drop_transport();
        self.link = Link::Idle { at: None };
        self.set_state(match refusal {
            Refusal::Expired => ClientState::Expired,
            Refusal::AuthFailed => ClientState::AuthFailed,
        });
    }

    /// Any frame arrived from the server (replies, pongs, notifications).
    pub fn handle_frame_received(&mut self, now: Instant) {
        if matches!(self.link, Link::Established { .. }) {
            self.last_heard = self.last_heard.max(now);
        }
    }

    /// The server acknowledged the close asked for by [`Action::SendClose`]:
    /// the session is closed on the servers, its ephemerals are gone.
    /// Ignored unless closing.
    pub fn handle_close_acknowledged(&mut self, _now: Instant) {
        if self.is_closing() {
            self.finish_close();
        }
    }

    /// The driver sent a frame on the transport (requests count as much as pings).
    pub fn handle_frame_sent(&mut self, now: Instant) {
        self.last_sent = self.last_sent.max(now);
    }

    /// The transport broke (closed by the peer, reset, I/O error).
    pub fn handle_transport_lost(&mut self, now: Instant) {
        match self.link {
            Link::Connecting { .. } | Link::Handshaking { .. } => self.attempt_failed(now, false),
            Link::Established { .. } => self.lost_server(now, false),
            Link::Idle { .. } => {}
        }
    }

    /// Time has reached [`poll_timeout`](Self::poll_timeout) (or any time at all:
    /// a call before anything is due changes nothing).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state.is_terminal() {
            return;
        }
        if self.session.is_some()
            && !matches!(self.link, Link::Established { .. })
            && now >= self.last_heard + self.timings.expiry
        {
            self.drop_transport();
            self.link = Link::Idle { at: None };
            self.set_state(ClientState::Expired);
            return;
        }
        if self.closing.is_some_and(|deadline| now >= deadline) {
            self.finish_close();
            return;
        }
        match self.link {
            Link::Idle { at: Some(at) } if now >= at => self.start_attempt(now),
            Link::Connecting { deadline, .. } | Link::Handshaking { deadline, .. }
                if now >= deadline =>
            {
                self.attempt_failed(now, true);
            }
            Link::Established { .. } => {
                if now >= self.last_heard + self.timings.read_timeout {
                    self.lost_server(now, true);
                } else if now >= self.last_sent + self.timings.ping_interval {
                    self.last_sent = now;
                    self.actions.push_back(Action::SendPing);
                }
            }
            _ => {}
        }
    }

    // ----- commands -----

    /// Closes the session. With a session granted, the server must hear it:
    /// when connected the client sends the close and waits for the
    /// acknowledgement ([`handle_close_acknowledged`](Self::handle_close_acknowledged));
    /// when not (`Suspended`), it goes on trying servers, the next attempt
    /// at once, and sends the close on the first that takes the session
    /// back (without reporting `Connected`). It gives up at `deadline`, or
    /// when the session expires (4/3·T without a server): the state ends in
    /// `Closed` either way, or `Expired` for the latter. Without a session
    /// (still `Connecting`) it is `Closed` at once. A second call can only
    /// bring the deadline forward.
    pub fn close(&mut self, now: Instant, deadline: Instant) {
        if self.state.is_terminal() {
            return;
        }
        if self.session.is_none() {
            self.finish_close();
            return;
        }
        if let Some(earlier) = self.closing {
            self.closing = Some(earlier.min(deadline));
            self.handle_timeout(now);
            return;
        }
        self.closing = Some(deadline);
        match self.link {
            Link::Established { .. } => {
                self.last_sent = now;
                self.actions.push_back(Action::SendClose);
            }
            Link::Idle { .. } => self.link = Link::Idle { at: Some(now) },
            Link::Connecting { .. } | Link::Handshaking { .. } => {}
        }
        self.handle_timeout(now);
    }

    // ----- outputs -----

    /// The next thing the driver must do, in order.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next state change to report, in order.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next; `None`
    /// once terminal.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state.is_terminal() {
            return None;
        }
        let link = match self.link {
            Link::Idle { at } => at,
            Link::Connecting { deadline, .. } | Link::Handshaking { deadline, .. } => {
                Some(deadline)
            }
            Link::Established { .. } => {
                let read = self.last_heard + self.timings.read_timeout;
                let ping = self.last_sent + self.timings.ping_interval;
                Some(read.min(ping))
            }
        };
        // While established, the read timeout comes first.
        let expiry = match self.link {
            Link::Established { .. } => None,
            _ => self.session.map(|_| self.last_heard + self.timings.expiry),
        };
        [link, expiry, self.closing].into_iter().flatten().min()
    }

    // ----- internals -----

    fn start_attempt(&mut self, now: Instant) {
        let host = self.order[self.cursor];
        self.link = Link::Connecting {
            host,
            deadline: now + self.timings.connect_timeout,
        };
        if self.session.is_none() {
            self.set_state(ClientState::Connecting);
        }
        self.actions.push_back(Action::Connect {
            host,
            deadline: now + self.timings.connect_timeout,
        });
    }

    /// The current attempt failed; `drop` when a transport may be half-open.
    fn attempt_failed(&mut self, now: Instant, drop: bool) {
        if drop {
            self.drop_transport();
        }
        self.failures_in_cycle += 1;
        self.schedule_next(now);
    }

    /// The established server went silent (`drop`) or its transport broke:
    /// the next host is tried at once, so that a client whose server died
    /// is back as soon as another answers.
    fn lost_server(&mut self, now: Instant, drop: bool) {
        if drop {
            self.drop_transport();
        }
        self.set_state(ClientState::Suspended);
        self.cursor = (self.cursor + 1) % self.order.len();
        self.link = Link::Idle { at: Some(now) };
    }

    /// `min(1 s, T/10)`, with the negotiated timeout once known.
    fn backoff(&self) -> Duration {
        MAX_BACKOFF.min(self.timings.session_timeout / 10)
    }

    fn schedule_next(&mut self, now: Instant) {
        self.cursor = (self.cursor + 1) % self.order.len();
        let backoff = self.backoff();
        let jitter_us = u64::try_from(self.max_jitter().as_micros()).unwrap_or(u64::MAX);
        let mut delay = if jitter_us == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(self.rng.u64(0..jitter_us))
        };
        if self.failures_in_cycle >= self.order.len() {
            self.failures_in_cycle = 0;
            delay += backoff;
        }
        self.link = Link::Idle {
            at: Some(now + delay),
        };
    }

    fn finish_close(&mut self) {
        self.drop_transport();
        self.link = Link::Idle { at: None };
        self.closing = None;
        self.set_state(ClientState::Closed);
    }

    fn drop_transport(&mut self) {
        if !matches!(self.link, Link::Idle { .. }) {
            self.actions.push_back(Action::DropTransport);
        }
    }

    fn set_state(&mut self, state: ClientState) {
        if self.state != state {
            self.state = state;
            self.events.push_back(ClientEvent::StateChanged(state));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    fn client(hosts: usize, seed: u64, start: Instant) -> ClientSession {
        let config = ClientConfig {
            hosts: NonZeroUsize::new(hosts).expect("non-zero"),
            session_timeout: ms(6000),
            rng_seed: seed,
        };
        ClientSession::new(config, start)
    }

    fn actions(c: &mut ClientSession) -> Vec<Action> {
        std::iter::from_fn(|| c.poll_action()).collect()
    }

    fn events(c: &mut ClientSession) -> Vec<ClientState> {
        std::iter::from_fn(|| c.poll_event())
            .map(|ClientEvent::StateChanged(s)| s)
            .collect()
    }

    fn connect(c: &mut ClientSession, now: Instant) -> SessionId {
        c.handle_connected(now);
        let id = SessionId::from_u64(0x0100_0000_0000_0001);
        c.handle_handshake_accepted(id, SessionPassword::from_bytes([3; 16]), ms(6000), now);
        id
    }

    #[test]
    fn shuffle_is_seeded_and_covers_every_host() {
        let start = Instant::now();
        let a = client(5, 1, start);
        let b = client(5, 1, start);
        assert_eq!(a.host_order(), b.host_order());
        let mut sorted = a.host_order().to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2, 3, 4]);
        let orders: std::collections::HashSet<Vec<usize>> = (0..20)
            .map(|seed| client(5, seed, start).host_order().to_vec())
            .collect();
        assert!(orders.len() > 1, "the seed changes the order");
    }

    /// The waits between attempts are a tenth of the session timeout, at
    /// most a second (ZooKeeper's), whatever the timeout.
    #[test]
    fn the_waits_between_attempts_scale_with_the_timeout_up_to_a_second() {
        for (timeout, bound) in [(ms(2000), ms(200)), (ms(60_000), ms(1000))] {
            let start = Instant::now();
            let mut c = ClientSession::new(
                ClientConfig {
                    hosts: NonZeroUsize::new(2).expect("non-zero"),
                    session_timeout: timeout,
                    rng_seed: 3,
                },
                start,
            );
            let mut now = start;
            let mut longest = Duration::ZERO;
            for attempt in 1..=20 {
                let Some(Action::Connect { .. }) = c.poll_action() else {
                    panic!("expected a connect")
                };
                c.handle_connect_failed(now);
                let wake = c.poll_timeout().expect("next attempt scheduled");
                let delay = wake - now;
                let cycle_done = attempt % 2 == 0;
                let base = if cycle_done { bound } else { Duration::ZERO };
                assert!(
                    delay >= base && delay < base + bound,
                    "T {timeout:?}: delay {delay:?}"
                );
                longest = longest.max(delay);
                now = wake;
                c.handle_timeout(now);
            }
            assert!(longest > bound, "a cycle's end waits the backoff");
        }
    }

    #[test]
    fn round_robin_with_jitter_and_backoff_after_a_full_cycle() {
        let start = Instant::now();
        let mut c = client(3, 9, start);
        let order = c.host_order().to_vec();
        let mut now = start;
        let mut tried = Vec::new();
        let mut starts = Vec::new();
        for _ in 0..6 {
            let Some(Action::Connect { host, deadline }) = c.poll_action() else {
                panic!("expected a connect")
            };
            // Reference: connect timeout T / hosts.
            assert_eq!(deadline, now + ms(2000));
            tried.push(host);
            starts.push(now);
            c.handle_connect_failed(now);
            let wake = c.poll_timeout().expect("next attempt scheduled");
            let delay = wake - now;
            // T = 6 s: the waits are bounded by T / 10 = 600 ms.
            let cycle_done = tried.len() % 3 == 0;
            let base = if cycle_done { ms(600) } else { ms(0) };
            assert!(delay >= base && delay < base + ms(600), "delay {delay:?}");
            now = wake;
            c.handle_timeout(now);
        }
        assert_eq!(tried, [order.clone(), order].concat());
        assert_eq!(starts[0], start, "the first attempt does not wait");
        assert_eq!(events(&mut c), vec![ClientState::Connecting]);
    }

    #[test]
    fn pings_when_idle_and_suspends_after_two_thirds_of_silence() {
        let start = Instant::now();
        let mut c = client(2, 3, start);
        let _ = actions(&mut c);
        connect(&mut c, start);
        let _ = actions(&mut c);
        // Sending a request postpones the ping.
        c.handle_frame_sent(start + ms(1500));
        assert_eq!(c.poll_timeout(), Some(start + ms(3500)));
        c.handle_timeout(start + ms(3500));
        assert!(matches!(actions(&mut c)[..], [Action::SendPing]));
        // A spurious wake-up does nothing.
        c.handle_timeout(start + ms(3600));
        assert!(actions(&mut c).is_empty());
        // Nothing heard for 2/3·T = 4 s: suspended, transport dropped.
        c.handle_timeout(start + ms(4000));
        assert!(matches!(actions(&mut c)[..], [Action::DropTransport]));
        assert_eq!(c.state(), ClientState::Suspended);
        // The next attempt reattaches with the same id and password.
        let wake = c.poll_timeout().expect("next attempt");
        c.handle_timeout(wake);
        let Some(Action::Connect { host, .. }) = c.poll_action() else {
            panic!("connect")
        };
        assert_eq!(host, c.host_order()[1], "the next host");
        c.handle_connected(wake);
        let Some(Action::SendHandshake(h)) = c.poll_action() else {
            panic!("handshake")
        };
        assert_eq!(h.session.map(|(id, _)| id), c.session_id());
        assert_eq!(h.session.map(|(_, p)| *p.as_bytes()), Some([3; 16]));
        assert_eq!(h.requested_timeout, ms(6000));
        assert_eq!(
            events(&mut c),
            vec![
                ClientState::Connecting,
                ClientState::Connected,
                ClientState::Suspended
            ]
        );
    }

    #[test]
    fn expires_itself_after_four_thirds_without_any_server() {
        // ZOOKEEPER-4508: no looping forever against a dead ensemble.
        let start = Instant::now();
        let mut c = client(2, 5, start);
        let _ = actions(&mut c);
        connect(&mut c, start);
        c.handle_transport_lost(start + ms(100));
        let mut now = start + ms(100);
        while let Some(wake) = c.poll_timeout() {
            now = wake;
            c.handle_timeout(now);
            for action in actions(&mut c) {
                if let Action::Connect { .. } = action {
                    c.handle_connect_failed(now);
                }
            }
        }
        assert_eq!(c.state(), ClientState::Expired);
        assert_eq!(now, start + ms(8000), "4/3·T after last hearing the server");
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn refusals_and_close_are_terminal_and_states_never_repeat() {
        let start = Instant::now();
        let mut c = client(1, 0, start);
        let _ = actions(&mut c);
        c.handle_connected(start);
        c.handle_refused(Refusal::AuthFailed, start);
        c.handle_refused(Refusal::Expired, start);
        c.close(start, start);
        assert_eq!(c.state(), ClientState::AuthFailed);
        assert_eq!(
            events(&mut c),
            vec![ClientState::Connecting, ClientState::AuthFailed]
        );

        // A deadline already reached: the close is sent, not waited for.
        let mut c = client(1, 0, start);
        let _ = actions(&mut c);
        connect(&mut c, start);
        let _ = actions(&mut c);
        c.close(start, start);
        assert!(matches!(
            actions(&mut c)[..],
            [Action::SendClose, Action::DropTransport]
        ));
        assert_eq!(c.state(), ClientState::Closed);
        assert_eq!(c.poll_timeout(), None);

        // Otherwise the client waits for the server's acknowledgement.
        let mut c = client(1, 0, start);
        let _ = actions(&mut c);
        connect(&mut c, start);
        let _ = actions(&mut c);
        let _ = events(&mut c);
        c.close(start, start + ms(1000));
        assert!(matches!(actions(&mut c)[..], [Action::SendClose]));
        assert!(c.is_closing());
        assert_eq!(c.state(), ClientState::Connected);
        assert_eq!(c.poll_timeout(), Some(start + ms(1000)));
        c.handle_close_acknowledged(start + ms(10));
        assert!(matches!(actions(&mut c)[..], [Action::DropTransport]));
        assert_eq!(events(&mut c), vec![ClientState::Closed]);
        assert!(!c.is_closing());

        // No session yet: nothing to tell a server.
        let mut c = client(2, 0, start);
        let _ = actions(&mut c);
        c.close(start, start + ms(1000));
        assert_eq!(c.state(), ClientState::Closed);
    }

    #[test]
    fn a_close_while_suspended_reattaches_only_to_send_it() {
        let start = Instant::now();
        let mut c = client(2, 4, start);
        let _ = actions(&mut c);
        connect(&mut c, start);
        c.handle_transport_lost(start + ms(100));
        c.handle_timeout(start + ms(100));
        assert!(matches!(
            actions(&mut c)[..],
            [Action::SendHandshake(_), Action::Connect { .. }]
        ));
        let _ = events(&mut c);
        // The immediate retry is under way; the close waits for it.
        c.close(start + ms(150), start + ms(3000));
        assert!(actions(&mut c).is_empty());
        c.handle_connected(start + ms(160));
        assert!(matches!(actions(&mut c)[..], [Action::SendHandshake(_)]));
        let id = c.session_id().expect("known");
        c.handle_handshake_accepted(
            id,
            SessionPassword::from_bytes([3; 16]),
            ms(6000),
            start + ms(170),
        );
        assert!(matches!(actions(&mut c)[..], [Action::SendClose]));
        assert!(events(&mut c).is_empty(), "Connected is not reported");
        c.handle_close_acknowledged(start + ms(180));
        assert_eq!(events(&mut c), vec![ClientState::Closed]);

        // A server that no longer holds the session: closed all the same.
        let mut c = client(2, 4, start);
        let _ = actions(&mut c);
        connect(&mut c, start);
        c.handle_transport_lost(start + ms(100));
        let _ = events(&mut c);
        c.close(start + ms(100), start + ms(3000));
        c.handle_connected(start + ms(110));
        c.handle_refused(Refusal::Expired, start + ms(120));
        assert_eq!(events(&mut c), vec![ClientState::Closed]);

        // The deadline passes first: Closed, the server expires it.
        let mut c = client(2, 4, start);
        let _ = actions(&mut c);
        connect(&mut c, start);
        c.handle_transport_lost(start + ms(100));
        let _ = events(&mut c);
        c.close(start + ms(100), start + ms(500));
        let mut now = start + ms(100);
        while let Some(wake) = c.poll_timeout() {
            now = wake;
            c.handle_timeout(now);
            for action in actions(&mut c) {
                if let Action::Connect { .. } = action {
                    c.handle_connect_failed(now);
                }
            }
        }
        assert_eq!(now, start + ms(500));
        assert_eq!(events(&mut c), vec![ClientState::Closed]);
    }

    #[test]
    fn the_first_retry_after_a_loss_is_immediate_and_later_ones_jitter_under_a_tenth_of_t() {
        // T = 2 s is negotiated although 6 s was asked for: the jitter
        // follows the negotiated timeout, min(1 s, T/10) = 200 ms.
        for seed in 0..50 {
            let start = Instant::now();
            let mut c = client(3, seed, start);
            let _ = actions(&mut c);
            c.handle_connected(start);
            let id = SessionId::from_u64(0x0100_0000_0000_0001);
            c.handle_handshake_accepted(id, SessionPassword::from_bytes([3; 16]), ms(2000), start);
            let _ = actions(&mut c);
            assert_eq!(c.max_jitter(), ms(200));
            let lost = start + ms(500);
            c.handle_transport_lost(lost);
            assert_eq!(c.poll_timeout(), Some(lost), "seed {seed}: at once");
            let mut now = lost;
            for attempt in 1..=6 {
                c.handle_timeout(now);
                let Some(Action::Connect { .. }) = c.poll_action() else {
                    panic!("seed {seed}: attempt {attempt} connects")
                };
                c.handle_connect_failed(now);
                let wake = c.poll_timeout().expect("next attempt");
                let delay = wake - now;
                // A full cycle is three failed attempts.
                let base = if attempt % 3 == 0 { ms(200) } else { ms(0) };
                assert!(
                    delay >= base && delay < base + ms(200),
                    "seed {seed}, attempt {attempt}: {delay:?}"
                );
                now = wake;
            }
        }

        // The knob bounds the jitter, not the pause after a full cycle.
        let start = Instant::now();
        let config = ClientConfig {
            hosts: NonZeroUsize::new(2).expect("non-zero"),
            session_timeout: ms(2000),
            rng_seed: 1,
        };
        let mut c = ClientSession::new(config, start).with_max_jitter(Duration::ZERO);
        let mut now = start;
        for attempt in 1..=4 {
            let Some(Action::Connect { .. }) = c.poll_action() else {
                panic!("attempt {attempt} connects")
            };
            c.handle_connect_failed(now);
            let wake = c.poll_timeout().expect("next attempt");
            let expected = if attempt % 2 == 0 { ms(200) } else { ms(0) };
            assert_eq!(wake - now, expected, "attempt {attempt}");
            now = wake;
            c.handle_timeout(now);
        }
    }

    #[test]
    fn resume_reattaches_with_the_given_id_and_password() {
        let start = Instant::now();
        let config = ClientConfig {
            hosts: NonZeroUsize::MIN,
            session_timeout: ms(6000),
            rng_seed: 0,
        };
        let id = SessionId::from_u64(0x0100_0000_0000_0007);
        let mut c = ClientSession::resume(config, id, SessionPassword::from_bytes([9; 16]), start);
        assert!(matches!(c.poll_action(), Some(Action::Connect { .. })));
        c.handle_connected(start);
        let Some(Action::SendHandshake(h)) = c.poll_action() else {
            panic!("handshake")
        };
        assert_eq!(h.session.map(|(id, _)| id), Some(id));
        assert_eq!(h.session.map(|(_, p)| *p.as_bytes()), Some([9; 16]));
        c.handle_refused(Refusal::AuthFailed, start);
        assert_eq!(
            events(&mut c),
            vec![ClientState::Connecting, ClientState::AuthFailed]
        );

        // Never answered: expired on its own after 4/3 of the requested timeout.
        let mut c = ClientSession::resume(config, id, SessionPassword::from_bytes([9; 16]), start);
        let mut now = start;
        while let Some(wake) = c.poll_timeout() {
            now = wake;
            c.handle_timeout(now);
            for action in actions(&mut c) {
                if let Action::Connect { .. } = action {
                    c.handle_connect_failed(now);
                }
            }
        }
        assert_eq!(c.state(), ClientState::Expired);
        assert_eq!(now, start + ms(8000));
    }

    #[test]
    fn a_new_id_on_reattach_is_reported_as_expiry() {
        // Reference "Known failures": reattach must keep the id or say Expired.
        let start = Instant::now();
        let mut c = client(1, 0, start);
        let _ = actions(&mut c);
        connect(&mut c, start);
        c.handle_transport_lost(start);
        let wake = c.poll_timeout().expect("retry");
        c.handle_timeout(wake);
        c.handle_connected(wake);
        let other = SessionId::from_u64(0x0100_0000_0000_0002);
        c.handle_handshake_accepted(other, SessionPassword::from_bytes([0; 16]), ms(6000), wake);
        assert_eq!(c.state(), ClientState::Expired);
        assert_ne!(c.session_id(), Some(other));
    }
}
