//! A connection's mailbox: the notices (watch events, disconnects) others
//! queue for it, one sender (the connection's entry in the connections
//! map) and one receiver (the connection).
//!
//! Every held session has one, so it is small: one allocation of about 150
//! bytes, and no room for notices until one comes. (tokio's unbounded
//! channel, used before, took about 1 KB a connection: its state is padded
//! to cache lines and it allocates a block of 32 slots up front.) The same
//! allocation says whose the mailbox is ([`Holder`]), so the connections
//! map holds a pointer a session.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures_util::task::AtomicWaker;

use std::net::SocketAddr;

use session_core::OwnerId;

use crate::server::Notice;

/// Whose a mailbox is: what the connections map tells of the connection
/// that holds a session.
#[derive(Debug)]
pub(crate) struct Holder {
    /// The connection.
    pub(crate) owner: OwnerId,
    /// Its peer's address.
    pub(crate) remote: SocketAddr,
    /// The client's name and version from its handshake, for the admin.
    pub(crate) client: Box<str>,
}

#[derive(Debug)]
struct Slot {
    holder: Holder,
    queue: Mutex<VecDeque<Notice>>,
    /// Notices queued and not yet taken, so that the receiver looks at the
    /// queue without its lock when there are none, which is nearly always
    /// (every request checks).
    queued: AtomicUsize,
    /// Wakes the receiver. It registers before it looks at `queued` and
    /// `closed`, and a sender changes those before waking it, so no notice
    /// is missed. (Registering again with the same task costs a compare,
    /// where tokio's `Notify` took a lock to enter its waiter list and
    /// another to leave it each time the connection woke for something
    /// else.)
    waker: AtomicWaker,
    /// The sender is gone: nothing more will come.
    closed: AtomicBool,
}

/// A new mailbox for `holder`: where to send, and where to receive.
pub(crate) fn mailbox(holder: Holder) -> (Sender, Receiver) {
    let slot = Arc::new(Slot {
        holder,
        queue: Mutex::new(VecDeque::new()),
        queued: AtomicUsize::new(0),
        waker: AtomicWaker::new(),
        closed: AtomicBool::new(false),
    });
    (Sender(Arc::clone(&slot)), Receiver(slot))
}

/// Queues notices for a connection; dropping it closes the mailbox.
#[derive(Debug)]
pub(crate) struct Sender(Arc<Slot>);

impl Sender {
    /// Whose the mailbox is.
    pub(crate) fn holder(&self) -> &Holder {
        &self.0.holder
    }

    /// Queues `notice`. The connection may be gone already; then it is
    /// dropped with the mailbox, which is what a closed connection wants.
    pub(crate) fn send(&self, notice: Notice) {
        {
            let mut queue = self
                .0
                .queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            queue.push_back(notice);
            self.0.queued.fetch_add(1, Ordering::Release);
        }
        self.0.waker.wake();
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

/// The connection's end of the mailbox.
#[derive(Debug)]
pub(crate) struct Receiver(Arc<Slot>);

impl Receiver {
    /// The next notice, or `None` once the sender is gone and every notice
    /// was taken. Cancel-safe: a notice is taken only when returned. (A
    /// plain future rather than an `async fn`, whose state would add to
    /// that of the connection waiting on it.)
    pub(crate) fn recv(&mut self) -> impl Future<Output = Option<Notice>> + '_ {
        std::future::poll_fn(|cx| {
            if let Some(notice) = self.try_recv() {
                return Poll::Ready(Some(notice));
            }
            self.0.waker.register(cx.waker());
            if let Some(notice) = self.try_recv() {
                return Poll::Ready(Some(notice));
            }
            if self.0.closed.load(Ordering::Acquire) {
                return Poll::Ready(self.try_recv());
            }
            Poll::Pending
        })
    }

    /// Whether no notice is queued (without taking the lock).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.queued.load(Ordering::Acquire) == 0
    }

    /// The next notice if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Notice> {
        if self.0.queued.load(Ordering::Acquire) == 0 {
            return None;
        }
        let notice = self
            .0
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop_front();
        if notice.is_some() {
            self.0.queued.fetch_sub(1, Ordering::Relaxed);
        }
        notice
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::Code;

    fn holder() -> Holder {
        Holder {
            owner: OwnerId::new(1),
            remote: SocketAddr::from(([127, 0, 0, 1], 2181)),
            client: "test".into(),
        }
    }

    fn disconnect(code: Code) -> Notice {
        Notice::Disconnect(Box::new((code, String::new())))
    }

    fn code(notice: Option<Notice>) -> Option<Code> {
        match notice {
            Some(Notice::Disconnect(disconnect)) => Some(disconnect.0),
            _ => None,
        }
    }

    #[tokio::test]
    async fn notices_arrive_in_order_then_none_once_the_sender_is_gone() {
        let (sender, mut receiver) = mailbox(holder());
        assert!(receiver.try_recv().is_none());
        sender.send(disconnect(Code::SessionMoved));
        sender.send(disconnect(Code::Unavailable));
        assert_eq!(code(receiver.recv().await), Some(Code::SessionMoved));
        drop(sender);
        // A notice queued before the sender went is still delivered.
        assert_eq!(code(receiver.recv().await), Some(Code::Unavailable));
        assert!(receiver.recv().await.is_none());
        assert!(receiver.try_recv().is_none());
    }

    #[test]
    fn notices_sent_from_many_threads_all_arrive_once() {
        // The count that lets try_recv skip the lock must never hide a
        // queued notice: 4 threads × 1,000 notices, taken while they are
        // being sent.
        let (sender, mut receiver) = mailbox(holder());
        let sender = Arc::new(sender);
        let senders: Vec<_> = (0..4)
            .map(|_| {
                let sender = Arc::clone(&sender);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        sender.send(disconnect(Code::SessionMoved));
                    }
                })
            })
            .collect();
        let mut taken = 0;
        while taken < 4000 {
            if receiver.try_recv().is_some() {
                taken += 1;
            } else if senders.iter().all(std::thread::JoinHandle::is_finished) {
                // Everything sent is queued by now.
                let rest = std::iter::from_fn(|| receiver.try_recv()).count();
                taken += rest;
                break;
            }
        }
        for sender in senders {
            sender.join().expect("sender thread");
        }
        taken += std::iter::from_fn(|| receiver.try_recv()).count();
        assert_eq!(taken, 4000);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_a_notice_sent_from_another_task() {
        let (sender, mut receiver) = mailbox(holder());
        let waiting = tokio::spawn(async move { receiver.recv().await.is_some() });
        tokio::task::yield_now().await;
        std::thread::spawn(move || sender.send(disconnect(Code::SessionMoved)))
            .join()
            .expect("sender thread");
        let woke = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
        assert!(matches!(woke, Ok(Ok(true))), "{woke:?}");
    }

    #[test]
    fn a_mailbox_is_small() {
        // 80 bytes of mailbox and 56 of holder; with the Arc's counts, 152
        // bytes, one 160-byte block of malloc.
        assert!(
            std::mem::size_of::<Slot>() <= 136,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }
}
