//! The accounting: every answer of the run against what every subscriber received.
//!
//! An event accepted (202, or 201 from the upstream) must reach every subscriber, live or by
//! replay after a resume, exactly once. For each subscriber, each accepted event is then
//! *delivered* (received), *missed after a reset* (not received, but the subscriber got a
//! `reset` that covers it: the server said it could not resume there), or *lost*. A receipt
//! of a sequence number or an id the subscriber already had is a *duplicate*. All
//! subscribers are open before the first publish, so each of them owes every event.
//!
//! A reset covers the events between the last one received before it and the first one
//! received after it (the stream goes live after a reset). Sends run concurrently, so sequence
//! order is publish order only within a few events: a lost event right at a reset's edge may
//! be counted as covered.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::cluster::{node_name, Addresses, NodeFigures};
use crate::faults::FaultRecord;
use crate::subscribers::{Kind, Log};
use crate::traffic::{Answer, Answered};

/// How many lost or duplicated sequence numbers the report lists.
const EXAMPLES: usize = 10;

/// Part of the run between two faults, with what happened to the events answered in it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Phase {
    /// When it starts, in seconds from the first send.
    pub from_s: f64,
    /// What started it: `start`, or the fault.
    pub after: String,
    pub accepted: u64,
    pub status_503: u64,
    pub lost_events: u64,
    pub duplicated_events: u64,
}

/// The figures of one kind of traffic: published events, or upstream notifications.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Category {
    /// Sends made, each with a sequence number of its own.
    pub sent: u64,
    /// Answered 2xx.
    pub accepted: u64,
    pub status_503: u64,
    /// Other statuses, by code.
    pub other_status: BTreeMap<String, u64>,
    /// No connection: nothing was sent.
    pub not_sent: u64,
    /// Sent, but no complete answer: fate unknown, so not owed to anyone.
    pub unanswered: u64,
    /// accepted × subscribers.
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub missed_after_reset: u64,
    pub lost_deliveries: u64,
    /// Accepted events that did not reach at least one subscriber (no reset covering it).
    pub lost_events: u64,
    /// Accepted events that reached no subscriber at all.
    pub lost_everywhere: u64,
    pub duplicate_deliveries: u64,
    /// Events that some subscriber received more than once.
    pub duplicated_events: u64,
    /// Events refused with a status that some subscriber received all the same.
    pub refused_but_delivered: u64,
    /// Unanswered sends that some subscriber received (they were taken, then).
    pub unanswered_delivered: u64,
    /// Extra uses of an id that an answer had already given to another event.
    pub ids_reused: u64,
    pub lost_first: Vec<u64>,
    /// Events lost at some subscribers only: which, and where the subscribers missing them
    /// opened their first stream (`"3612: 20 of 60 subscribers missed it (A 20)"`).
    pub lost_partly_first: Vec<String>,
    pub duplicated_first: Vec<u64>,
    pub phases: Vec<Phase>,
}

/// How the subscribers fared.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SubscriberFigures {
    pub count: usize,
    pub opens: u64,
    /// Streams opened after each subscriber's first.
    pub reconnects: u64,
    /// Subscribers that opened streams on more than one node.
    pub moved: u64,
    /// `reset` events received, by reason.
    pub resets: BTreeMap<String, u64>,
    /// Why streams ended or did not open, by kind.
    pub ends: BTreeMap<String, u64>,
    /// Events that were neither published nor relayed by this run.
    pub foreign_events: u64,
    /// Events received beyond the log's cap, not accounted (should be 0).
    pub not_kept: u64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub command: String,
    pub nodes: usize,
    pub subscribers_per_node: usize,
    pub duration_s: f64,
    pub rate: f64,
    pub source_rate: f64,
    pub faults: Vec<FaultRecord>,
    /// Events published with `POST /broadcast` on channel `chaos`.
    pub published: Category,
    /// Notifications posted to the upstream, relayed into channel `notifications`.
    pub source: Category,
    pub subscribers: SubscriberFigures,
    pub node_figures: Vec<NodeFigures>,
    /// Where the processes listened at the end (every one is stopped when the run returns).
    pub addresses: Addresses,
    /// Whether every subscriber had every accepted event before the settle time ran out.
    pub caught_up: bool,
    pub settle_s: f64,
    pub elapsed_s: f64,
    pub pass: bool,
    pub verdict: String,
}

/// Which sequence number a receipt carries in a category.
type Pick = fn(Kind) -> Option<u64>;

pub fn published_seq(kind: Kind) -> Option<u64> {
    match kind {
        Kind::Published(seq) => Some(seq),
        _ => None,
    }
}

pub fn source_seq(kind: Kind) -> Option<u64> {
    match kind {
        Kind::Source(seq) => Some(seq),
        _ => None,
    }
}

/// The sequence numbers of the accepted answers.
pub fn accepted(answers: &[Answer]) -> Vec<u64> {
    answers
        .iter()
        .filter(|a| matches!(a.answered, Answered::Accepted(_)))
        .map(|a| a.seq)
        .collect()
}

/// The ranges of sequence numbers each of a subscriber's resets covers (exclusive ends).
fn reset_windows(log: &Log, pick: Pick) -> Vec<(u64, u64)> {
    log.resets
        .iter()
        .map(|reset| {
            let seqs = |range: &[crate::subscribers::Receipt]| {
                range
                    .iter()
                    .filter_map(|r| pick(r.kind))
                    .collect::<Vec<_>>()
            };
            let before = seqs(&log.receipts[..reset.after.min(log.receipts.len())]);
            let after = seqs(&log.receipts[reset.after.min(log.receipts.len())..]);
            (
                before.into_iter().max().unwrap_or(0),
                after.first().copied().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

/// One category's figures. `boundaries` are the phases' starts (seconds) and names.
pub fn category(
    answers: &[Answer],
    logs: &[Log],
    pick: Pick,
    boundaries: &[(f64, String)],
) -> Category {
    let mut c = Category {
        sent: answers.len() as u64,
        ..Category::default()
    };
    let mut by_seq: HashMap<u64, &Answer> = HashMap::new();
    let mut ids: HashSet<&str> = HashSet::new();
    for answer in answers {
        by_seq.insert(answer.seq, answer);
        match &answer.answered {
            Answered::Accepted(id) => {
                c.accepted += 1;
                if let Some(id) = id {
                    if !ids.insert(id) {
                        c.ids_reused += 1;
                    }
                }
            }
            Answered::Refused(503) => c.status_503 += 1,
            Answered::Refused(status) => {
                *c.other_status.entry(status.to_string()).or_default() += 1
            }
            Answered::NotSent => c.not_sent += 1,
            Answered::Unanswered => c.unanswered += 1,
        }
    }
    let accepted = accepted(answers);
    c.expected_deliveries = c.accepted * logs.len() as u64;

    // Each lost event, with the first node of each subscriber that misses it.
    let mut lost: BTreeMap<u64, Vec<Option<usize>>> = BTreeMap::new();
    let mut duplicated: HashSet<u64> = HashSet::new();
    let mut refused_delivered: HashSet<u64> = HashSet::new();
    let mut unanswered_delivered: HashSet<u64> = HashSet::new();
    for log in logs {
        let mut counts: HashMap<u64, u32> = HashMap::new();
        let mut seen_ids: HashSet<&str> = HashSet::new();
        for receipt in &log.receipts {
            let Some(seq) = pick(receipt.kind) else {
                continue;
            };
            let count = counts.entry(seq).or_default();
            *count += 1;
            let new_id = receipt.id.is_empty() || seen_ids.insert(&receipt.id);
            if *count > 1 || !new_id {
                c.duplicate_deliveries += 1;
                duplicated.insert(seq);
            }
        }
        let windows = reset_windows(log, pick);
        for &seq in &accepted {
            if counts.contains_key(&seq) {
                c.delivered += 1;
            } else if windows.iter().any(|&(lo, hi)| lo < seq && seq < hi) {
                c.missed_after_reset += 1;
            } else {
                c.lost_deliveries += 1;
                lost.entry(seq).or_default().push(log.first_node);
            }
        }
        for seq in counts.keys() {
            match by_seq.get(seq).map(|a| &a.answered) {
                Some(Answered::Refused(_)) => {
                    refused_delivered.insert(*seq);
                }
                Some(Answered::NotSent | Answered::Unanswered) => {
                    unanswered_delivered.insert(*seq);
                }
                _ => {}
            }
        }
    }
    c.lost_events = lost.len() as u64;
    c.lost_everywhere = lost.values().filter(|at| at.len() == logs.len()).count() as u64;
    c.lost_first = lost.keys().take(EXAMPLES).copied().collect();
    c.lost_partly_first = lost
        .iter()
        .filter(|(_, at)| at.len() < logs.len())
        .take(EXAMPLES)
        .map(|(seq, at)| {
            let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
            for node in at {
                *by_node
                    .entry(node.map_or("-".to_owned(), node_name))
                    .or_default() += 1;
            }
            let nodes: Vec<String> = by_node.iter().map(|(n, k)| format!("{n} {k}")).collect();
            format!(
                "{seq}: {} of {} subscribers missed it ({})",
                at.len(),
                logs.len(),
                nodes.join(", ")
            )
        })
        .collect();
    c.duplicated_events = duplicated.len() as u64;
    let mut duplicated: Vec<u64> = duplicated.into_iter().collect();
    duplicated.sort_unstable();
    c.duplicated_first = duplicated.iter().take(EXAMPLES).copied().collect();
    c.refused_but_delivered = refused_delivered.len() as u64;
    c.unanswered_delivered = unanswered_delivered.len() as u64;

    c.phases = boundaries
        .iter()
        .map(|(from_s, after)| Phase {
            from_s: *from_s,
            after: after.clone(),
            ..Phase::default()
        })
        .collect();
    let phase_of = |seq: u64| {
        let at = by_seq.get(&seq)?.at.as_secs_f64();
        boundaries.iter().rposition(|(from, _)| *from <= at)
    };
    for answer in answers {
        if let Some(phase) = phase_of(answer.seq).and_then(|i| c.phases.get_mut(i)) {
            match answer.answered {
                Answered::Accepted(_) => phase.accepted += 1,
                Answered::Refused(503) => phase.status_503 += 1,
                _ => {}
            }
        }
    }
    for seq in lost.keys() {
        if let Some(phase) = phase_of(*seq).and_then(|i| c.phases.get_mut(i)) {
            phase.lost_events += 1;
        }
    }
    for seq in &duplicated {
        if let Some(phase) = phase_of(*seq).and_then(|i| c.phases.get_mut(i)) {
            phase.duplicated_events += 1;
        }
    }
    c
}

/// The subscribers' figures.
pub fn subscribers(logs: &[Log]) -> SubscriberFigures {
    let mut s = SubscriberFigures {
        count: logs.len(),
        ..SubscriberFigures::default()
    };
    for log in logs {
        s.opens += u64::from(log.opens);
        s.reconnects += u64::from(log.opens.saturating_sub(1));
        s.moved += u64::from(log.nodes.len() > 1);
        for reset in &log.resets {
            *s.resets.entry(reset.reason.clone()).or_default() += 1;
        }
        for (end, n) in &log.ends {
            *s.ends.entry(end.clone()).or_default() += n;
        }
        s.foreign_events += log
            .receipts
            .iter()
            .filter(|r| r.kind == Kind::Foreign)
            .count() as u64;
        s.not_kept += log.dropped;
    }
    s
}

/// Why the run failed; empty when it passed.
pub fn failures(published: &Category, source: &Category, subs: &SubscriberFigures) -> Vec<String> {
    let mut why = Vec::new();
    if published.accepted == 0 {
        why.push("no published event was accepted".to_owned());
    }
    for (c, what) in [
        (published, "accepted events"),
        (source, "upstream notifications"),
    ] {
        if c.lost_events > 0 {
            why.push(format!(
                "{} {what} lost (first: {:?})",
                c.lost_events, c.lost_first
            ));
        }
        if c.duplicated_events > 0 {
            why.push(format!(
                "{} {what} duplicated (first: {:?})",
                c.duplicated_events, c.duplicated_first
            ));
        }
        if c.refused_but_delivered > 0 {
            why.push(format!(
                "{} {what} refused with an error status were delivered all the same",
                c.refused_but_delivered
            ));
        }
    }
    if subs.not_kept > 0 {
        why.push(format!(
            "{} received events over the log cap were not accounted",
            subs.not_kept
        ));
    }
    why
}

impl Report {
    /// The human summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "sse-chaos: {} nodes on one Redis, {} subscribers ({} per node, channels chaos + \
             notifications), {} events/s for {:.0} s, {} notifications/s through the upstream",
            self.nodes,
            self.subscribers.count,
            self.subscribers_per_node,
            self.rate,
            self.duration_s,
            self.source_rate
        );
        let _ = writeln!(out, "faults:");
        for f in &self.faults {
            let _ = writeln!(
                out,
                "  {:>6.1} s  {:<9} {} ({} ms)",
                f.at_s,
                f.fault.name(),
                f.detail,
                f.took_ms
            );
        }
        let (p, s) = (&self.published, &self.source);
        let rows: [(&str, String, String); 12] = [
            ("sent", p.sent.to_string(), s.sent.to_string()),
            (
                "accepted (202 / 201)",
                p.accepted.to_string(),
                s.accepted.to_string(),
            ),
            ("503", p.status_503.to_string(), s.status_503.to_string()),
            (
                "other status",
                counts(&p.other_status),
                counts(&s.other_status),
            ),
            (
                "not sent / unanswered",
                format!("{} / {}", p.not_sent, p.unanswered),
                format!("{} / {}", s.not_sent, s.unanswered),
            ),
            (
                "delivered / expected",
                format!("{} / {}", p.delivered, p.expected_deliveries),
                format!("{} / {}", s.delivered, s.expected_deliveries),
            ),
            (
                "missed after a reset",
                p.missed_after_reset.to_string(),
                s.missed_after_reset.to_string(),
            ),
            (
                "lost deliveries",
                p.lost_deliveries.to_string(),
                s.lost_deliveries.to_string(),
            ),
            (
                "LOST events (at >= 1 subscriber)",
                format!("{} ({} everywhere)", p.lost_events, p.lost_everywhere),
                format!("{} ({} everywhere)", s.lost_events, s.lost_everywhere),
            ),
            (
                "DUPLICATED events",
                p.duplicated_events.to_string(),
                s.duplicated_events.to_string(),
            ),
            (
                "refused but delivered",
                p.refused_but_delivered.to_string(),
                s.refused_but_delivered.to_string(),
            ),
            (
                "ids reused in answers",
                p.ids_reused.to_string(),
                s.ids_reused.to_string(),
            ),
        ];
        let _ = writeln!(
            out,
            "{:<34} {:>22} {:>22}",
            "", "POST /broadcast", "upstream source"
        );
        for (name, a, b) in rows {
            let _ = writeln!(out, "{name:<34} {a:>22} {b:>22}");
        }
        for (what, c) in [("POST /broadcast", p), ("upstream source", s)] {
            for partly in &c.lost_partly_first {
                let _ = writeln!(out, "lost at some subscribers only ({what}): {partly}");
            }
        }
        let _ = writeln!(out, "lost / 503 by phase (POST /broadcast):");
        for phase in &p.phases {
            let _ = writeln!(
                out,
                "  from {:>6.1} s ({}): {} accepted, {} lost, {} duplicated, {} 503",
                phase.from_s,
                phase.after,
                phase.accepted,
                phase.lost_events,
                phase.duplicated_events,
                phase.status_503
            );
        }
        let sub = &self.subscribers;
        let _ = writeln!(
            out,
            "subscribers: {} reconnects ({} moved to another node); resets: {}; stream ends: {}",
            sub.reconnects,
            sub.moved,
            counts(&sub.resets),
            counts(&sub.ends)
        );
        for n in &self.node_figures {
            let figure = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| v.to_string());
            let _ = writeln!(
                out,
                "node {}: started {}x; its last process's broker events lost {}, recovered {}",
                n.node,
                n.starts,
                figure(n.broker_events_lost),
                figure(n.broker_events_recovered)
            );
        }
        let _ = writeln!(
            out,
            "caught up: {} (settle {:.1} s), elapsed {:.1} s",
            self.caught_up, self.settle_s, self.elapsed_s
        );
        let _ = writeln!(out, "{}", self.verdict);
        out
    }

    pub fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// `key n, key n`, or `none`.
fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".to_owned();
    }
    let parts: Vec<String> = map.iter().map(|(k, n)| format!("{k} {n}")).collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscribers::{Receipt, Reset};
    use std::time::Duration;

    fn answer(seq: u64, at: f64, answered: Answered) -> Answer {
        Answer {
            seq,
            at: Duration::from_secs_f64(at),
            answered,
        }
    }

    fn ok(id: &str) -> Answered {
        Answered::Accepted(Some(id.to_owned()))
    }

    fn log(events: &[(&str, u64)], resets: &[(&str, usize)]) -> Log {
        let mut log = Log::default();
        log.first_node = Some(1);
        log.receipts = events
            .iter()
            .map(|&(id, seq)| Receipt {
                id: id.into(),
                kind: Kind::Published(seq),
            })
            .collect();
        log.resets = resets
            .iter()
            .map(|&(reason, after)| Reset {
                reason: reason.to_owned(),
                after,
            })
            .collect();
        log
    }

    #[test]
    fn delivered_lost_duplicated_and_reset_add_up() {
        let answers = vec![
            answer(1, 0.1, ok("e-1")),
            answer(2, 0.2, ok("e-2")),
            answer(3, 1.5, Answered::Refused(503)),
            answer(4, 1.6, ok("e-3")),
            answer(5, 1.7, ok("e-3")), // an id given twice
            answer(6, 1.8, Answered::Unanswered),
            answer(7, 2.5, ok("e-5")),
            answer(8, 2.6, Answered::Refused(429)),
        ];
        let logs = vec![
            // Everything, 2 twice (same id), and the unanswered 6.
            log(
                &[
                    ("e-1", 1),
                    ("e-2", 2),
                    ("e-2", 2),
                    ("e-3", 4),
                    ("e-4", 5),
                    ("x", 6),
                    ("e-5", 7),
                ],
                &[],
            ),
            // Misses 4 and 5 with no reset (lost), and gets the refused 3.
            log(&[("e-1", 1), ("e-2", 2), ("z", 3), ("e-5", 7)], &[]),
            // Misses 4 and 5 but a reset covers them; misses 1 with none (lost).
            log(&[("e-2", 2), ("e-5", 7)], &[("history_evicted", 1)]),
        ];
        let phases = vec![(0.0, "start".to_owned()), (1.0, "redis".to_owned())];
        let c = category(&answers, &logs, published_seq, &phases);
        assert_eq!(
            (c.sent, c.accepted, c.status_503, c.unanswered, c.not_sent),
            (8, 5, 1, 1, 0)
        );
        assert_eq!(c.other_status.get("429"), Some(&1));
        assert_eq!(c.expected_deliveries, 15);
        assert_eq!(
            (c.delivered, c.missed_after_reset, c.lost_deliveries),
            (10, 2, 3)
        );
        assert_eq!(
            c.expected_deliveries,
            c.delivered + c.missed_after_reset + c.lost_deliveries
        );
        assert_eq!((c.lost_events, c.lost_everywhere), (3, 0));
        assert_eq!(c.lost_first, [1, 4, 5]);
        assert_eq!(
            c.lost_partly_first,
            [
                "1: 1 of 3 subscribers missed it (B 1)",
                "4: 1 of 3 subscribers missed it (B 1)",
                "5: 1 of 3 subscribers missed it (B 1)"
            ]
        );
        assert_eq!((c.duplicate_deliveries, c.duplicated_events), (1, 1));
        assert_eq!(c.duplicated_first, [2]);
        assert_eq!((c.refused_but_delivered, c.unanswered_delivered), (1, 1));
        assert_eq!(c.ids_reused, 1);
        assert_eq!(c.phases[0].accepted, 2);
        assert_eq!(c.phases[0].lost_events, 1);
        assert_eq!(c.phases[1].lost_events, 2);
        assert_eq!(c.phases[1].status_503, 1);

        let subs = subscribers(&logs);
        assert_eq!(subs.resets.get("history_evicted"), Some(&1));
        let why = failures(&c, &Category::default(), &subs);
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(why[0].starts_with("3 accepted events lost"), "{why:?}");
    }

    #[test]
    fn an_id_received_twice_for_two_events_is_a_duplicate() {
        let answers = vec![answer(1, 0.0, ok("e-1")), answer(2, 0.0, ok("e-2"))];
        let logs = vec![log(&[("e-1", 1), ("e-1", 2)], &[])];
        let c = category(&answers, &logs, published_seq, &[]);
        assert_eq!((c.delivered, c.duplicate_deliveries), (2, 1));
        assert!(failures(&c, &Category::default(), &subscribers(&logs))[0].contains("duplicated"));
    }
}
