//! A connection's mailbox: the notices (watch events, disconnects) others
//! queue for it, one sender (the connection's entry in the connections
//! map) and one receiver (the connection).
//!
//! Every held session has one, so it is small: one allocation of about a
//! hundred bytes, and no room for notices until one comes. (tokio's
//! unbounded channel, used before, took about 1 KB a connection: its state
//! is padded to cache lines and it allocates a block of 32 slots up front.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::server::Notice;

#[derive(Debug)]
struct Slot {
    queue: Mutex<VecDeque<Notice>>,
    /// Wakes the receiver; a notice sent while it is not waiting leaves a
    /// permit, so none is missed.
    ready: Notify,
    /// The sender is gone: nothing more will come.
    closed: AtomicBool,
}

/// A new mailbox: where to send, and where to receive.
pub(crate) fn mailbox() -> (Sender, Receiver) {
    let slot = Arc::new(Slot {
        queue: Mutex::new(VecDeque::new()),
        ready: Notify::new(),
        closed: AtomicBool::new(false),
    });
    (Sender(Arc::clone(&slot)), Receiver(slot))
}

/// Queues notices for a connection; dropping it closes the mailbox.
#[derive(Debug)]
pub(crate) struct Sender(Arc<Slot>);

impl Sender {
    /// Queues `notice`. The connection may be gone already; then it is
    /// dropped with the mailbox, which is what a closed connection wants.
    pub(crate) fn send(&self, notice: Notice) {
        self.0
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push_back(notice);
        self.0.ready.notify_one();
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.ready.notify_one();
    }
}

/// The connection's end of the mailbox.
#[derive(Debug)]
pub(crate) struct Receiver(Arc<Slot>);

impl Receiver {
    /// The next notice, or `None` once the sender is gone and every notice
    /// was taken. Cancel-safe: a notice is taken only when returned.
    pub(crate) async fn recv(&mut self) -> Option<Notice> {
        loop {
            if let Some(notice) = self.try_recv() {
                return Some(notice);
            }
            if self.0.closed.load(Ordering::Acquire) {
                return self.try_recv();
            }
            self.0.ready.notified().await;
        }
    }

    /// The next notice if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Notice> {
        self.0
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::Code;

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
        let (sender, mut receiver) = mailbox();
        assert!(receiver.try_recv().is_none());
        sender.send(disconnect(Code::SessionMoved));
        sender.send(disconnect(Code::Unavailable));
        assert_eq!(code(receiver.recv().await), Some(Code::SessionMoved));
        drop(sender);
        // A notice queued before the sender went is still delivered.
        assert_eq!(code(receiver.recv().await), Some(Code::Unavailable));
        assert!(receiver.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_a_notice_sent_from_another_task() {
        let (sender, mut receiver) = mailbox();
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
        assert!(
            std::mem::size_of::<Slot>() <= 128,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }
}
