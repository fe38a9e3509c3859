//! The one way data reaches the UI: network tasks send [`Inbound`] messages into a bounded
//! channel, and each send asks egui for a repaint a few milliseconds later, so a burst of events
//! costs one frame, not one frame each.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::board::Inbound;

/// Messages buffered before senders wait for the UI to drain them.
const CAPACITY: usize = 8192;

/// How long after a message the UI repaints: long enough to gather a burst.
const REPAINT_AFTER: Duration = Duration::from_millis(5);

/// The sending side, cloned into every task.
#[derive(Debug, Clone)]
pub struct Outbox {
    sender: mpsc::Sender<Inbound>,
    ctx: egui::Context,
}

impl Outbox {
    /// Sends a message and schedules a repaint; waits while the inbox is full. Returns false once
    /// the UI is gone, which tells the task to stop.
    pub async fn send(&self, message: Inbound) -> bool {
        let sent = self.sender.send(message).await.is_ok();
        if sent {
            self.ctx.request_repaint_after(REPAINT_AFTER);
        }
        sent
    }
}

/// The receiving side, drained by `App::logic`.
#[derive(Debug)]
pub struct Inbox {
    receiver: mpsc::Receiver<Inbound>,
}

impl Inbox {
    /// A connected inbox and outbox that repaint `ctx`.
    pub fn new(ctx: &egui::Context) -> (Self, Outbox) {
        let (sender, receiver) = mpsc::channel(CAPACITY);
        (
            Self { receiver },
            Outbox {
                sender,
                ctx: ctx.clone(),
            },
        )
    }

    /// The next waiting message, without blocking.
    pub fn try_next(&mut self) -> Option<Inbound> {
        self.receiver.try_recv().ok()
    }
}
