//! Echo replies seen by a prober, and the outage they show: pure functions
//! over `ping -D` output.

/// A gap between replies at least this long counts as the host being
/// unreachable; shorter ones are probing jitter (replies come every 5 ms).
pub const DOWN_GAP: f64 = 0.1;

/// One echo reply: its sequence number (unwrapped past 65535) and when it
/// arrived (seconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reply {
    pub seq: u64,
    pub at: f64,
}

/// Parses `[1700000000.123456] 64 bytes from 172.25.250.10: icmp_seq=12 ttl=64
/// time=0.045 ms` into (icmp_seq, timestamp). Other lines (errors,
/// statistics, duplicates) give None.
pub fn parse_reply(line: &str) -> Option<(u16, f64)> {
    if !line.contains(" bytes from ") || line.contains("DUP!") {
        return None;
    }
    let stamp = line.strip_prefix('[')?.split(']').next()?;
    let at: f64 = stamp.parse().ok()?;
    let seq = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("icmp_seq="))?
        .parse()
        .ok()?;
    Some((seq, at))
}

/// Turns ping's 16-bit sequence numbers into a growing count.
#[derive(Debug, Default)]
pub struct SeqUnwrapper {
    last: Option<u64>,
}

impl SeqUnwrapper {
    pub fn unwrap(&mut self, seq: u16) -> u64 {
        let seq = u64::from(seq);
        let value = match self.last {
            None => seq,
            Some(last) => {
                let base = last & !0xffff;
                let candidate = base | seq;
                // Far below the last one: the next round (a wrap); far
                // above it: a late reply from the previous round.
                if candidate + 0x8000 < last {
                    candidate + 0x1_0000
                } else if candidate > last + 0x8000 && candidate >= 0x1_0000 {
                    candidate - 0x1_0000
                } else {
                    candidate
                }
            }
        };
        self.last = Some(self.last.map_or(value, |l| l.max(value)));
        value
    }
}

/// What a prober saw between two instants.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Outage {
    /// The longest time without a reply (seconds); the probing interval when
    /// nothing was lost.
    pub longest_gap: f64,
    /// Echo requests sent in between whose reply never came.
    pub lost: u64,
    /// When (seconds after the window's start) the last gap of at least
    /// [`DOWN_GAP`] ended; None if there was none.
    pub back_at: Option<f64>,
    /// No reply in the window's last [`DOWN_GAP`]: the host had not come back.
    pub still_down: bool,
}

/// The outage in `replies` (sorted by arrival) between `from` and `to`. The
/// last reply before `from` anchors the first gap, so an outage that began
/// just before the window still counts from its start.
pub fn outage(replies: &[Reply], from: f64, to: f64) -> Outage {
    let anchor = replies.iter().rev().find(|r| r.at < from).copied();
    let points: Vec<Reply> = anchor
        .into_iter()
        .chain(
            replies
                .iter()
                .filter(|r| r.at >= from && r.at <= to)
                .copied(),
        )
        .collect();
    let Some(last) = points.last() else {
        return Outage {
            longest_gap: to - from,
            lost: 0,
            back_at: None,
            still_down: true,
        };
    };
    let mut result = Outage::default();
    if anchor.is_none() {
        result.longest_gap = points[0].at - from;
    }
    for pair in points.windows(2) {
        let gap = pair[1].at - pair[0].at;
        result.longest_gap = result.longest_gap.max(gap);
        result.lost += pair[1].seq.saturating_sub(pair[0].seq + 1);
        if gap >= DOWN_GAP {
            result.back_at = Some(pair[1].at - from);
        }
    }
    let tail = to - last.at;
    result.longest_gap = result.longest_gap.max(tail);
    result.still_down = tail >= DOWN_GAP;
    result
}

/// Whether the replies show the host answering without a gap over
/// `max_gap` for the last `window` seconds before `now`.
pub fn steady(replies: &[Reply], now: f64, window: f64, max_gap: f64) -> bool {
    let Some(latest) = replies.last() else {
        return false;
    };
    if now - latest.at > max_gap {
        return false;
    }
    let mut start = latest.at;
    for pair in replies.windows(2).rev() {
        if pair[1].at - pair[0].at > max_gap {
            break;
        }
        start = pair[0].at;
        if start <= now - window {
            return true;
        }
    }
    start <= now - window
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(points: &[(u64, f64)]) -> Vec<Reply> {
        points.iter().map(|&(seq, at)| Reply { seq, at }).collect()
    }

    #[test]
    fn parses_reply_lines_and_skips_the_rest() {
        let line =
            "[1795841071.346017] 64 bytes from 172.25.250.10: icmp_seq=12 ttl=64 time=0.086 ms";
        assert_eq!(parse_reply(line), Some((12, 1795841071.346017)));
        assert_eq!(
            parse_reply("PING 172.25.250.10 (172.25.250.10) 56(84) bytes of data."),
            None
        );
        assert_eq!(
            parse_reply("[1.5] From 172.25.250.254 icmp_seq=3 Destination Host Unreachable"),
            None
        );
        assert_eq!(
            parse_reply("[1.5] 64 bytes from 10.0.0.1: icmp_seq=3 ttl=64 time=0.1 ms (DUP!)"),
            None
        );
        assert_eq!(parse_reply("[garbage] 64 bytes from x: icmp_seq=1"), None);
    }

    #[test]
    fn sequence_numbers_unwrap_past_65535() {
        let mut u = SeqUnwrapper::default();
        assert_eq!(u.unwrap(65534), 65534);
        assert_eq!(u.unwrap(65535), 65535);
        assert_eq!(u.unwrap(0), 65536);
        assert_eq!(u.unwrap(2), 65538);
        // A late reply from before the wrap stays in the old round.
        assert_eq!(u.unwrap(65535), 65535);
    }

    #[test]
    fn steady_replies_show_no_outage() {
        let r = replies(&[(1, 0.0), (2, 0.005), (3, 0.010), (4, 0.015)]);
        let o = outage(&r, 0.004, 0.016);
        assert!((o.longest_gap - 0.005).abs() < 1e-9, "{o:?}");
        assert_eq!(o.lost, 0);
        assert_eq!(o.back_at, None);
        assert!(!o.still_down);
    }

    #[test]
    fn a_gap_counts_lost_replies_and_when_the_host_came_back() {
        let r = replies(&[(1, 10.0), (2, 10.005), (50, 10.5), (51, 10.505)]);
        let o = outage(&r, 10.001, 10.51);
        assert!((o.longest_gap - 0.495).abs() < 1e-9, "{o:?}");
        assert_eq!(o.lost, 47);
        let back = o.back_at.unwrap_or_default();
        assert!((back - 0.499).abs() < 1e-9, "{o:?}");
    }

    #[test]
    fn a_host_that_never_came_back_is_still_down() {
        let r = replies(&[(1, 10.0), (2, 10.005)]);
        let o = outage(&r, 10.001, 12.0);
        assert!(o.still_down);
        assert!((o.longest_gap - 1.995).abs() < 1e-9, "{o:?}");
    }

    #[test]
    fn steady_needs_recent_continuous_replies() {
        let r = replies(&[(1, 0.0), (2, 0.3), (3, 0.35), (4, 0.4), (5, 0.45)]);
        assert!(steady(&r, 0.46, 0.1, 0.06));
        assert!(!steady(&r, 0.46, 0.2, 0.06), "the gap before 0.3 breaks it");
        assert!(!steady(&r, 0.6, 0.1, 0.06), "nothing recent");
    }
}
