//! A deterministic harness: the client state machine against a real
//! `SessionTracker`, over a simulated network with a virtual clock. No test
//! sleeps; time jumps to the next wake-up of either side.

use std::time::{Duration, Instant};

use session_core::{
    Action, ClientConfig, ClientEvent, ClientSession, ClientState, ConnectString, IdGenerator,
    OwnerId, PasswordSecret, Refusal, ServerId, SessionId, SessionTracker, TimeoutPolicy,
};

const T: Duration = Duration::from_millis(6000);

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// One client, several hosts sharing one tracker (as an ensemble shares its
/// sessions), a switchable partition, and hosts that can be dead (black holes).
struct Harness {
    start: Instant,
    now: Instant,
    client: ClientSession,
    tracker: SessionTracker,
    dead: Vec<bool>,
    /// Partition windows `[from, to)` during which nothing gets through.
    partitions: Vec<(Instant, Instant)>,
    /// The transport as the server sees it: host and owner id.
    link: Option<(usize, OwnerId)>,
    next_owner: u64,
    states: Vec<(Duration, ClientState)>,
    expired_on_server: Vec<(Duration, SessionId)>,
}

impl Harness {
    fn new(hosts: usize, seed: u64) -> Self {
        Self::with_dead_host(hosts, seed, None)
    }

    /// A harness whose host `dead` (if any) is a black hole from the start.
    fn with_dead_host(hosts: usize, seed: u64, dead: Option<usize>) -> Self {
        let start = Instant::now();
        let list: Vec<String> = (0..hosts).map(|n| format!("h{n}:2181")).collect();
        let servers: ConnectString = list.join(",").parse().expect("valid connect string");
        let client = ClientSession::new(ClientConfig::new(&servers, T, seed), start);
        let policy = TimeoutPolicy::new(ms(2000)).expect("valid tick");
        let ids = IdGenerator::new(ServerId::new(1).expect("valid"), 1_700_000_000_000, None);
        let secret = PasswordSecret::new(&[11; 32]).expect("long enough");
        let mut harness = Self {
            start,
            now: start,
            client,
            tracker: SessionTracker::new(policy, ids, secret, start),
            dead: (0..hosts).map(|host| Some(host) == dead).collect(),
            partitions: Vec::new(),
            link: None,
            next_owner: 1,
            states: Vec::new(),
            expired_on_server: Vec::new(),
        };
        harness.drain();
        harness
    }

    fn partitioned(&self) -> bool {
        self.partitions
            .iter()
            .any(|(from, to)| *from <= self.now && self.now < *to)
    }

    fn reachable(&self, host: usize) -> bool {
        !self.dead[host] && !self.partitioned()
    }

    /// Carries out every queued action and records events.
    fn drain(&mut self) {
        while let Some(action) = self.client.poll_action() {
            let now = self.now;
            match action {
                Action::Connect { host, .. } => {
                    if self.reachable(host) {
                        self.link = Some((host, OwnerId::new(self.next_owner)));
                        self.next_owner += 1;
                        self.client.handle_connected(now);
                    }
                    // Otherwise a black hole: the attempt times out on its own.
                }
                Action::SendHandshake(handshake) => {
                    let Some((host, owner)) = self.link else {
                        continue;
                    };
                    if !self.reachable(host) {
                        continue;
                    }
                    self.client.handle_frame_sent(now);
                    match handshake.session {
                        None => {
                            let created = self
                                .tracker
                                .create(handshake.requested_timeout, owner, now)
                                .expect("ids left");
                            self.client.handle_handshake_accepted(
                                created.id,
                                created.password,
                                created.timeout,
                                now,
                            );
                        }
                        Some((id, password)) => {
                            match self.tracker.reattach(
                                id,
                                &password,
                                handshake.requested_timeout,
                                owner,
                                now,
                            ) {
                                Ok(reattached) => self.client.handle_handshake_accepted(
                                    id,
                                    password,
                                    reattached.timeout,
                                    now,
                                ),
                                Err(e) if e.is_expired() => {
                                    self.client.handle_refused(Refusal::Expired, now)
                                }
                                Err(_) => self.client.handle_refused(Refusal::AuthFailed, now),
                            }
                        }
                    }
                }
                Action::SendPing => {
                    let (Some((host, owner)), Some(id)) = (self.link, self.client.session_id())
                    else {
                        continue;
                    };
                    if !self.reachable(host) {
                        continue;
                    }
                    self.client.handle_frame_sent(now);
                    match self.tracker.touch(id, owner, now) {
                        Ok(()) => self.client.handle_frame_received(now),
                        Err(_) => {
                            self.client.handle_refused(Refusal::Expired, now);
                        }
                    }
                }
                Action::SendClose => {
                    let (Some((host, _)), Some(id)) = (self.link, self.client.session_id()) else {
                        continue;
                    };
                    if !self.reachable(host) {
                        continue;
                    }
                    self.client.handle_frame_sent(now);
                    let _ = self.tracker.mark_closing(id);
                    self.tracker.remove(id);
                    self.client.handle_close_acknowledged(now);
                }
                Action::DropTransport => self.link = None,
            }
        }
        while let Some(ClientEvent::StateChanged(state)) = self.client.poll_event() {
            self.states.push((self.now - self.start, state));
        }
    }

    /// Jumps to the next wake-up of the client, the tracker or a partition edge.
    fn step(&mut self) {
        let edges = self
            .partitions
            .iter()
            .flat_map(|(from, to)| [*from, *to])
            .filter(|t| *t > self.now);
        let next = [self.client.poll_timeout(), self.tracker.next_deadline()]
            .into_iter()
            .flatten()
            .chain(edges)
            .min()
            .expect("something is always scheduled in these scenarios");
        self.now = next.max(self.now);
        for id in self.tracker.poll_expired(self.now) {
            self.expired_on_server.push((self.now - self.start, id));
            self.tracker.remove(id);
        }
        self.client.handle_timeout(self.now);
        self.drain();
    }

    fn run_until(&mut self, offset: Duration) {
        while self.now < self.start + offset && !self.client.state().is_terminal() {
            self.step();
        }
    }

    fn partition(&mut self, from: Duration, length: Duration) {
        self.partitions
            .push((self.start + from, self.start + from + length));
    }

    fn final_states(&self) -> Vec<ClientState> {
        self.states.iter().map(|(_, s)| *s).collect()
    }
}

#[test]
fn partitions_shorter_than_half_the_timeout_keep_the_session() {
    for seed in 0..20 {
        for from in [10_000, 10_700, 11_300, 11_900] {
            let mut h = Harness::new(3, seed);
            h.run_until(ms(5000));
            let id = h.client.session_id().expect("connected");
            h.partition(ms(from), T / 2);
            h.run_until(ms(60_000));
            assert_eq!(
                h.client.state(),
                ClientState::Connected,
                "seed {seed} from {from}: {:?}",
                h.states
            );
            assert_eq!(h.client.session_id(), Some(id));
            assert!(h.tracker.contains(id));
            assert!(h.expired_on_server.is_empty());
            // States never repeat back to back.
            assert!(h.states.windows(2).all(|w| w[0].1 != w[1].1));
        }
    }
}

#[test]
fn a_partition_forcing_failover_reattaches_elsewhere() {
    // Partition of 4.5 s: longer than the read timeout (4 s), shorter than T.
    // The client suspends, reattaches to another host with the same id, and
    // the session survives when the reattach lands before the server's expiry
    // (an attempt into the partition is lost for the connect timeout, T/3;
    // the random wait before the first attempt, under T/10, decides).
    let mut survived = 0;
    for seed in 0..20 {
        let mut h = Harness::new(3, seed);
        h.run_until(ms(5000));
        let id = h.client.session_id().expect("connected");
        h.partition(ms(10_000), ms(4500));
        h.run_until(ms(60_000));
        let states = h.final_states();
        assert!(
            states.contains(&ClientState::Suspended),
            "seed {seed}: {states:?}"
        );
        match h.client.state() {
            ClientState::Connected => {
                survived += 1;
                assert_eq!(h.client.session_id(), Some(id));
                assert!(h.tracker.info(id).and_then(|i| i.owner).is_some());
            }
            // A reconnect that lands after the server's expiry must say so.
            ClientState::Expired => assert!(!h.tracker.contains(id)),
            other => panic!("seed {seed}: unexpected {other:?}"),
        }
    }
    assert!(survived > 0, "no run survived a sub-T partition");
}

#[test]
fn partitions_longer_than_the_timeout_expire_the_session() {
    for seed in 0..10 {
        for length in [T * 2, T * 3] {
            let mut h = Harness::new(3, seed);
            h.run_until(ms(5000));
            let id = h.client.session_id().expect("connected");
            h.partition(ms(10_000), length);
            h.run_until(ms(120_000));
            assert_eq!(
                h.client.state(),
                ClientState::Expired,
                "seed {seed}: {:?}",
                h.states
            );
            assert_eq!(h.expired_on_server.len(), 1);
            assert_eq!(h.expired_on_server[0].1, id);
            // The server never expires early: last touch was at most T/3 before
            // the partition, so expiry is after 10 s - 2 s + T.
            assert!(h.expired_on_server[0].0 > ms(10_000 - 2000) + T);
            assert_eq!(
                h.final_states(),
                vec![
                    ClientState::Connecting,
                    ClientState::Connected,
                    ClientState::Suspended,
                    ClientState::Expired
                ]
            );
        }
    }
}

#[test]
fn a_partition_between_t_and_four_thirds_t_is_noticed_on_reconnect() {
    // The server expires the session; the client, still within 4/3·T, finds
    // out when it reconnects and is told Expired (never a silent new session).
    for seed in 0..10 {
        let mut h = Harness::new(2, seed);
        h.run_until(ms(5000));
        let id = h.client.session_id().expect("connected");
        h.partition(ms(10_000), ms(7000));
        h.run_until(ms(60_000));
        assert_eq!(h.client.state(), ClientState::Expired, "seed {seed}");
        assert_eq!(h.client.session_id(), Some(id));
        assert!(!h.tracker.contains(id));
    }
}

#[test]
fn a_dead_first_host_fails_over_to_the_second() {
    for seed in 0..10 {
        // The seeded shuffle decides which host comes first; kill that one.
        let first = Harness::new(2, seed).client.host_order()[0];
        let mut h = Harness::with_dead_host(2, seed, Some(first));
        h.run_until(ms(20_000));
        assert_eq!(h.client.state(), ClientState::Connected, "seed {seed}");
        assert_eq!(h.client.current_host(), Some(1 - first));
        // Connect timeout T/2 = 3 s, then at most 999 ms of jitter.
        let connected_at = h
            .states
            .iter()
            .find(|(_, s)| *s == ClientState::Connected)
            .map(|(at, _)| *at)
            .expect("connected");
        assert!(
            connected_at >= ms(3000) && connected_at < ms(4000),
            "{connected_at:?}"
        );
    }
}

#[test]
fn closing_removes_the_session_on_the_server() {
    let mut h = Harness::new(2, 4);
    h.run_until(ms(3000));
    let id = h.client.session_id().expect("connected");
    h.client.close(h.now, h.now + T);
    h.drain();
    assert_eq!(h.client.state(), ClientState::Closed);
    assert!(!h.tracker.contains(id));
    assert!(h.link.is_none());
}

#[test]
fn a_close_while_suspended_reaches_a_server_once_one_answers() {
    for seed in 0..20 {
        let mut h = Harness::new(3, seed);
        h.run_until(ms(5000));
        let id = h.client.session_id().expect("connected");
        // At 10 s the connection breaks and nothing gets through for 1 s.
        h.partition(ms(10_000), ms(1000));
        h.run_until(ms(10_000));
        h.link = None;
        h.client.handle_transport_lost(h.now);
        h.drain();
        assert_eq!(h.client.state(), ClientState::Suspended, "seed {seed}");
        let asked = h.start + ms(10_500);
        while h.now < asked {
            h.step();
        }
        h.client.close(asked, asked + T);
        h.drain();
        while !h.client.state().is_terminal() {
            h.step();
        }
        assert_eq!(h.client.state(), ClientState::Closed, "seed {seed}");
        let closed_at = h.now - h.start;
        assert!(!h.tracker.contains(id), "seed {seed}: the server closed it");
        assert!(
            h.expired_on_server.is_empty(),
            "seed {seed}: closed, not expired"
        );
        // Reached once the partition is over: the attempt into it is lost
        // for the connect timeout (T/3 from 10 s at the latest), then one
        // more wait under T/10, and T/10 more after a full cycle.
        assert!(
            closed_at >= ms(11_000) && closed_at <= ms(10_000) + T / 3 + T / 5,
            "seed {seed}: closed at {closed_at:?}"
        );
        let after_close: Vec<_> = h
            .states
            .iter()
            .filter(|(at, _)| *at >= ms(10_500))
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(
            after_close,
            vec![ClientState::Closed],
            "seed {seed}: no Connected reported while closing"
        );
    }
}

#[test]
fn a_close_no_server_hears_gives_up_at_its_deadline() {
    let mut h = Harness::new(2, 1);
    h.run_until(ms(5000));
    let id = h.client.session_id().expect("connected");
    h.partition(ms(6000), ms(60_000));
    h.run_until(ms(6000));
    h.link = None;
    h.client.handle_transport_lost(h.now);
    h.drain();
    assert_eq!(h.client.state(), ClientState::Suspended);
    let asked = h.now;
    h.client.close(asked, asked + ms(1000));
    h.drain();
    while !h.client.state().is_terminal() {
        h.step();
    }
    assert_eq!(h.client.state(), ClientState::Closed);
    assert_eq!(h.now, asked + ms(1000), "given up at the deadline");
    assert!(h.tracker.contains(id), "the server will expire it");
}
