//! The hub's bookkeeping for a shared broker: skipped ranges, the tail it gives back to a log
//! that lost it, and joining a new sequence.

use super::*;

fn hub() -> Arc<Hub> {
    Hub::new(7, |_| HistoryLimits {
        max_events: 100,
        max_age: Duration::from_secs(600),
    })
}

fn event(channels: &[&str], data: &str) -> impl FnOnce(EventId) -> Arc<Event> {
    let channels: Box<[Box<str>]> = channels.iter().map(|c| (*c).into()).collect();
    let data = data.to_owned();
    move |id| Event::new(id, "note", channels, &data)
}

#[tokio::test]
async fn a_waiting_publisher_learns_whether_its_event_arrived_or_was_skipped() {
    let hub = hub();
    hub.deliver_at(1, event(&["a"], "1"));
    hub.skip_to(5);
    hub.deliver_at(5, event(&["a"], "5"));
    assert!(hub.taken(1).await);
    for lost in 2..=4 {
        assert!(!hub.taken(lost).await, "{lost} was skipped");
    }
    assert!(hub.taken(5).await);
}

#[test]
fn the_tail_is_every_channel_s_history_above_a_seq_once_and_in_order() {
    let hub = hub();
    hub.deliver(event(&["a"], "1"));
    hub.deliver(event(&["a", "b"], "2"));
    hub.deliver(event(&["b"], "3"));
    hub.deliver(event(&["c"], "4"));
    let seqs = |tail: Vec<Arc<Event>>| tail.iter().map(|e| e.id.seq).collect::<Vec<_>>();
    assert_eq!(seqs(hub.tail(0, 100)), [1, 2, 3, 4]);
    assert_eq!(seqs(hub.tail(1, 100)), [2, 3, 4]);
    assert_eq!(seqs(hub.tail(0, 2)), [3, 4], "the newest when capped");
    assert!(hub.tail(4, 100).is_empty());
}

#[test]
fn rejoining_a_new_sequence_keeps_streams_and_resets_old_resumes() {
    let hub = hub();
    hub.deliver(event(&["a"], "1"));
    hub.deliver(event(&["a"], "2"));
    let open = hub.subscribe(request(None));
    hub.rejoin(9, 40);
    assert_eq!((hub.epoch(), hub.last_seq()), (9, 40));
    let next = hub
        .deliver_at(41, event(&["a"], "new"))
        .expect("next of the new sequence");
    assert_eq!(next.id.to_string(), "9-41");
    let got = queued(&hub, &open);
    assert_eq!(got.len(), 1, "the open stream gets it");
    assert_eq!(got[0].id, next.id);
    // An id of the old sequence, or of the new one before the join, cannot be resumed from.
    for old in ["7-1", "9-39"] {
        let resumed = hub.subscribe(request(Some(old)));
        assert!(resumed.reset.is_some(), "{old}");
    }
    let resumed = hub.subscribe(request(Some("9-40")));
    assert_eq!((resumed.reset, resumed.replay.len()), (None, 1));
}

/// Everything in the stream's queue once the writers have handed on what was taken in.
fn queued(hub: &Hub, sub: &Subscription) -> Vec<Arc<Event>> {
    hub.settle();
    let mut batch = Vec::new();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let _ = sub.client.queue.poll_recv(&mut cx, &mut batch, usize::MAX);
    batch
}

fn request(last_event_id: Option<&str>) -> SubscribeRequest {
    SubscribeRequest {
        channels: vec!["a".into()],
        types: None,
        last_event_id: last_event_id.map(str::to_owned),
        peer: None,
        principal: None,
        queue: 8,
    }
}

/// Two publishers fan out on two channels at once (the channels' locks let them run in
/// parallel): a stream of one channel gets that channel's events, a stream of both gets every
/// event, each exactly once and in sequence order.
#[test]
fn fan_outs_on_two_channels_at_once_keep_every_stream_exact_and_in_order() {
    const EACH: usize = 2_000;
    let hub = Hub::new(7, |_| HistoryLimits {
        max_events: 10_000,
        max_age: Duration::from_secs(600),
    });
    let subscribe = |channels: &[&str]| {
        hub.subscribe(SubscribeRequest {
            channels: channels.iter().map(|c| (*c).into()).collect(),
            types: None,
            last_event_id: None,
            peer: None,
            principal: None,
            queue: 2 * EACH + 1,
        })
    };
    let only_a = subscribe(&["a"]);
    let only_b = subscribe(&["b"]);
    let both = subscribe(&["a", "b"]);
    std::thread::scope(|s| {
        for channel in ["a", "b"] {
            let hub = &hub;
            s.spawn(move || {
                for _ in 0..EACH {
                    hub.deliver(event(&[channel], channel));
                }
            });
        }
    });
    let drain = |sub: &Subscription| {
        queued(&hub, sub)
            .iter()
            .map(|event| (event.id.seq, event.channels[0].to_string()))
            .collect::<Vec<_>>()
    };
    let (a, b, all) = (drain(&only_a), drain(&only_b), drain(&both));
    assert_eq!((a.len(), b.len(), all.len()), (EACH, EACH, 2 * EACH));
    assert!(a.iter().all(|(_, c)| c == "a") && b.iter().all(|(_, c)| c == "b"));
    for got in [&a, &b, &all] {
        assert!(
            got.windows(2).all(|w| w[0].0 < w[1].0),
            "ids strictly increase"
        );
    }
    assert_eq!(hub.last_seq(), 2 * EACH as u64);
}

/// Events published while a writer walks hundreds of streams join its walk (the streams it has
/// not reached get them now, the others on another pass): whatever the interleaving, every
/// stream gets every event once, in order.
#[test]
fn events_taken_up_during_a_walk_reach_every_stream_once_and_in_order() {
    const STREAMS: usize = 4_000;
    const EVENTS: u64 = 300;
    let hub = Hub::with_writers(
        7,
        |_| HistoryLimits {
            max_events: 10,
            max_age: Duration::from_secs(600),
        },
        1,
    );
    let subs: Vec<Subscription> = (0..STREAMS)
        .map(|_| {
            hub.subscribe(SubscribeRequest {
                queue: EVENTS as usize,
                ..request(None)
            })
        })
        .collect();
    for _ in 0..EVENTS {
        hub.deliver(event(&["a"], "x"));
        // Lets the writer run between publishes, so that events arrive amid its walks.
        std::thread::yield_now();
    }
    hub.settle();
    let expected: Vec<u64> = (1..=EVENTS).collect();
    for sub in &subs {
        let got: Vec<u64> = queued(&hub, sub).iter().map(|e| e.id.seq).collect();
        assert!(
            got == expected,
            "a stream got {} events, or out of order",
            got.len()
        );
    }
}
