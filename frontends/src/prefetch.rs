//! Read-ahead for a file's byte stream.
//!
//! `FileReader::stream` fetches its next segments only while it is polled, so a consumer that
//! awaits a slow write between chunks (a TLS data connection, a client that reads slowly) stops the
//! fetching too, and the transfer alternates between fetching and sending. [`prefetch`] drives the
//! stream on a task of its own, a bounded number of chunks ahead of the consumer: fetching,
//! decoding and sending overlap.

use futures::stream::{BoxStream, StreamExt};
use tokio::sync::mpsc;

/// Ends the driving task when the consumer drops the stream (the client went away).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `stream`, polled by a task of its own up to `depth` items ahead of the consumer.
pub(crate) fn prefetch<T: Send + 'static>(
    mut stream: BoxStream<'static, T>,
    depth: usize,
) -> BoxStream<'static, T> {
    let (sender, receiver) = mpsc::channel(depth.max(1));
    let task = tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            if sender.send(item).await.is_err() {
                break;
            }
        }
    });
    let guard = AbortOnDrop(task);
    futures::stream::unfold((receiver, guard), |(mut receiver, guard)| async move {
        let item = receiver.recv().await?;
        Some((item, (receiver, guard)))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn items_arrive_in_order_and_are_fetched_ahead() {
        let produced = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&produced);
        let source = futures::stream::iter(0..100)
            .inspect(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            })
            .boxed();
        let mut ahead = prefetch(source, 4);
        assert_eq!(ahead.next().await, Some(0));
        // Without the consumer asking, the task has run ahead: the channel's 4 slots plus the item
        // it waits to send.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let fetched = produced.load(Ordering::SeqCst);
        assert!((5..=7).contains(&fetched), "{fetched} produced");
        let rest: Vec<i32> = ahead.collect().await;
        assert_eq!(rest, (1..100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn dropping_the_stream_stops_the_task() {
        let produced = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&produced);
        let source = futures::stream::unfold(0u64, move |n| {
            let counter = Arc::clone(&counter);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                counter.fetch_add(1, Ordering::SeqCst);
                Some((n, n + 1))
            }
        })
        .boxed();
        let mut ahead = prefetch(source, 2);
        assert_eq!(ahead.next().await, Some(0));
        drop(ahead);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let after_drop = produced.load(Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(produced.load(Ordering::SeqCst), after_drop, "the task went on");
    }
}
