//! ZooKeeper's recipes on a session: a fair [`Lock`], a
//! [`LeaderElection`], a service registry ([`Membership`]), a [`Barrier`]
//! and a [`DoubleBarrier`].
//!
//! # Holding a lock or a leadership safely
//!
//! A lock held through a session is only as sure as the session: a holder
//! cut off from the servers may have lost it (its session expired, its
//! node deleted, the next holder let in) without knowing. So a
//! [`LockGuard`] (and a [`Leadership`]) carries two things:
//!
//! - a **validity** that turns false, for good, the moment the client is no
//!   longer `Connected` (it is *Suspended* after 2/3 of the session timeout
//!   without hearing a server, while the servers expire the session only
//!   after the whole timeout, so the holder stops before anyone else can
//!   start), or its session ends, or its node is deleted:
//!   [`is_valid`](LockGuard::is_valid), [`lost`](LockGuard::lost) to select
//!   on, [`validity`](LockGuard::validity) as a `watch` channel;
//! - a **fencing token** ([`FencingToken`]): the zxid of the creation of the
//!   holder's node, higher for every new holder, for a storage system to
//!   refuse writes from a holder that was paused past its session (a
//!   process stopped by the garbage collector or the scheduler cannot see
//!   its validity turn false in time; a token check by the storage can).
//!
//! Releasing deletes the node; dropping the guard releases it in the
//! background. A create whose answer was lost to a connection loss is found
//! again by the random part of its name, so it never leaves an orphan node
//! blocking the queue (Curator's "protected" names).
//!
//! # Node layout, and what works with Curator's and kazoo's recipes
//!
//! The nodes follow Apache Curator's layout by default ([`NodeLayout`]);
//! ZooKeeper's own clients reach this service on its ZooKeeper listener, so
//! programs using Curator or kazoo can share a recipe's path with
//! `session-client` programs:
//!
//! | here | nodes under the path | works with |
//! | --- | --- | --- |
//! | [`Lock`] | `_c_<uuid>-lock-<seq>`, ephemeral sequential | Curator's `InterProcessMutex` and `LeaderSelector` (a mutex too) on the same path; kazoo's `Lock` created with `extra_lock_patterns=["-lock-"]` (kazoo ignores our nodes otherwise) |
//! | [`Lock`] with [`NodeLayout::Kazoo`] | `<32 hex>__lock__<seq>` | kazoo's `Lock`, and its `ReadLock`/`WriteLock` as a writer; **not** Curator (which misorders kazoo's names) |
//! | [`LeaderElection`] | `_c_<uuid>-latch-<seq>`, data = the id | Curator's `LeaderLatch` (same order, same leader, `getLeader()` shows our id) |
//! | [`LeaderElection`] with [`NodeLayout::Kazoo`] | `<32 hex>__lock__<seq>`, data = the id | kazoo's `Election` (and its `contenders()`) |
//! | [`Membership`] | `<id>`, ephemeral, data = the member's | Curator's `GroupMember` (same nodes both ways); Curator's `ServiceDiscovery` instances under `<base>/<service>` are listed (their data is Curator's JSON); kazoo's `Party` members are listed (as `<hex>__party__`), ours are not in kazoo's list |
//! | [`Barrier`] | the node itself | Curator's `DistributedBarrier`, kazoo's `Barrier` |
//! | [`DoubleBarrier`] | `<uuid>` ephemeral per participant, `ready` | Curator's `DistributedDoubleBarrier`; kazoo's `DoubleBarrier` uses the same nodes |
//!
//! Parents are created as containers, as Curator does (the server deletes
//! them once their last child is gone). Curator's and kazoo's recipes have
//! no fencing token, but any of them can compute ours: it is the `czxid` of
//! the holder's node ([`Lock::contenders`] shows it for each node). Mixing
//! Curator's and kazoo's own clients on one lock is unsafe whatever this
//! crate does: each misorders the other's names.
//!
//! # Timing
//!
//! Nothing here adds timers: how fast a holder notices a problem is the
//! session's business (suspended after 2/3 of the negotiated timeout
//! without a server, at once when the connection breaks), and a lost
//! holder's node is deleted when its session expires, a timeout after the
//! servers last heard it.

mod barrier;
mod election;
mod hold;
mod lock;
mod membership;
mod names;
mod session;

pub use barrier::{Barrier, DoubleBarrier};
pub use election::{LeaderElection, Leadership};
pub use hold::{FencingToken, Participant};
pub use lock::{Lock, LockGuard};
pub use membership::{Member, MemberEvent, MemberWatch, Membership, Registration};
pub use names::NodeLayout;
